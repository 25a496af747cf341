"""MAgent2 battle (``magent2.environments.battle_v4``, Zheng et al. 2018) as a host env: Li et al. 2023's
large-scale experiment (F2A2-ISAC, Fig. 7).

Two armies (``red_*`` then ``blue_*``) of equal size face each other on a square grid. Every agent sees a
13x13 view with 5 channels (obstacles, own team's presence and HP, the other team's presence and HP),
flattened to 845 inputs, and picks one of ``Discrete(21)`` actions (stay, 12 moves, 8 attacks). Both
teams have the same spaces, so the adapter puts all agents in **one group** (red first): one shared
network acts for both armies (self-play) unless some agents are fixed. Battle's observations are
relative to the observing agent's own team, so a policy trained as red plays blue unchanged.

Rewards are magent2's defaults (Li et al. 2023 list the same battle rewards as costs, with the sign
flipped): ``step_reward=-0.005`` per step, ``attack_penalty=-0.1`` per attack, ``attack_opponent_reward=0.2``
per attack on an enemy, ``dead_penalty=-0.1`` on dying, and +5 (fixed in magent2) per kill. Dead agents
leave the episode (``active=False``, reward 0); the episode ends when one army is gone (terminated) or
after ``max_cycles`` steps (truncated, bootstrapped from).

Team size: magent2 places ``int(0.2 map_size)`` rows and columns of agents two cells apart, but drops
those that would stand on the border, so the team sizes (measured with magent2 0.3.4) are 2 for
map_size 12, **12 for map_size 20** (the paper's smallest army), 16 for 24, 64 for 40, 81 for 45, 144 for 60,
256 for 80 and 625 for 125.

Keys: ``map_size`` (>= 12, magent2's minimum; default 45 as magent2), ``max_cycles`` (500), and the four
reward options above. Install with ``pip install 'trustmarl[magent]'`` (the ``magent2`` wheel).
"""

from __future__ import annotations

from typing import Any

from trustmarl.envs.host.pettingzoo_adapter import PettingZooFactory, load_pettingzoo
from trustmarl.envs.host.registry import BATTLE_DEFAULTS

BATTLE = "magent2.environments.battle_v4:parallel_env"
MIN_MAP_SIZE = 12  # magent2's battle asserts map_size >= 12 (2 agents per team)


def battle(**kwargs: Any) -> PettingZooFactory:
    """Factory of ``magent2/battle`` (keys: :data:`BATTLE_DEFAULTS`); checks the package and the options at once."""
    m = kwargs.get("map_size", BATTLE_DEFAULTS["map_size"])
    if isinstance(m, bool) or not isinstance(m, int) or m < MIN_MAP_SIZE:
        raise ValueError(f"map_size={m!r} is too small: battle needs an integer map_size >= {MIN_MAP_SIZE} "
                         "(2 agents per team)")
    c = kwargs.get("max_cycles", BATTLE_DEFAULTS["max_cycles"])
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"max_cycles={c!r} must be an integer >= 1")
    return load_pettingzoo(BATTLE, **{**BATTLE_DEFAULTS, **kwargs})
