"""JAX-native Multi-Agent Particle Environments (``mpe/*``): a vectorised particle-world core and its scenarios.

- :mod:`trustmarl.envs.mpe.core`: the physics (entities, actions, contact forces, integration).
- :mod:`trustmarl.envs.mpe.spread`: ``mpe/simple_spread`` (N agents; mpe2's reward and Li et al. 2022's
  Spread-2 / Spread-3 Sep/Mix/Ful rewards).
- :mod:`trustmarl.envs.mpe.rover_tower`: ``mpe/rover_tower`` (Iqbal & Sha 2019; seeds 000 and 003).
- :mod:`trustmarl.envs.mpe.treasure`: ``mpe/treasure_collection`` (Cooperative Treasure Collection).
- :mod:`trustmarl.envs.mpe.classic`: the other mpe2 scenarios (``mpe/simple``, ``simple_reference``,
  ``simple_speaker_listener``, ``simple_push``, ``simple_adversary``, ``simple_tag``, ``simple_crypto``,
  ``simple_world_comm``).

Importing this package registers all of them.
"""

from trustmarl.envs.mpe.core import ParticleEnv, World
from trustmarl.envs.mpe.spread import SimpleSpread, SpreadState
from trustmarl.envs.mpe.classic import (
    ParticleState, Simple, SimpleAdversary, SimpleCrypto, SimplePush, SimpleReference, SimpleSpeakerListener,
    SimpleTag, SimpleWorldComm,
)
from trustmarl.envs.mpe.rover_tower import RoverTower, RoverTowerState
from trustmarl.envs.mpe.treasure import TreasureCollection, TreasureState

__all__ = [
    "ParticleEnv", "World", "SimpleSpread", "SpreadState", "ParticleState", "Simple", "SimpleAdversary",
    "SimpleCrypto", "SimplePush", "SimpleReference", "SimpleSpeakerListener", "SimpleTag", "SimpleWorldComm",
    "RoverTower", "RoverTowerState", "TreasureCollection", "TreasureState",
]
