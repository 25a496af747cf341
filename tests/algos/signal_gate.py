"""A 3-agent heterogeneous cooperative task that nobody tuned for: speaker, mover, gate (tests only).

- **speaker** (``Discrete(4)``) sees which of 4 landmarks is the hidden target (one-hot) and says a
  symbol every step;
- **mover** (``Box(2)``, continuous) hears the speaker's last symbol (one-hot), sees its own position
  and the 4 landmark positions, and moves by ``0.2 * clip(action, -1, 1)`` per step;
- **gate** (``Discrete(2)``) sees the mover's distance to the target and decides each step whether to
  open: open while the mover is within 0.25 of the target scores +1, open elsewhere -1, closed 0.

Team reward per step: ``-0.2 * distance(mover, target) + gate term``; episodes last 25 steps (time
limit, never terminated). Three agent groups with different observation and action spaces, a
communication dependency (mover needs the speaker) and a timing dependency (gate needs the mover).
Returns of the team reward: a uniformly random policy about -16, the scripted policy (say the target,
walk straight to it, open when inside) about +13.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep

LANDMARKS = np.array([[0.7, 0.7], [-0.7, 0.7], [-0.7, -0.7], [0.7, -0.7]], np.float32)
RADIUS = 0.25
SPEED = 0.2


class GateState(NamedTuple):
    target: jax.Array  # int32 landmark index
    pos: jax.Array  # [2] mover position
    message: jax.Array  # int32 the speaker's last symbol
    step: jax.Array  # int32


@dataclasses.dataclass(frozen=True)
class SignalGate(MultiAgentEnv):
    max_cycles: int = 25
    speed: float = SPEED
    radius: float = RADIUS
    time_onehot: bool = False  # time as a one-hot of the step (0..max_cycles) instead of a fraction

    @property
    def time_dim(self) -> int:
        return self.max_cycles + 1 if self.time_onehot else 1

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return (
            AgentGroup("speaker", ("speaker",), 4 + self.time_dim, Discrete(4)),
            AgentGroup("mover", ("mover",), 2 + 4 + 8, Box(2, -1.0, 1.0)),
            AgentGroup("gate", ("gate",), 1 + self.time_dim, Discrete(2)),
        )

    @property
    def state_dim(self) -> int:
        return 4 + 2 + 4 + 1 + self.time_dim

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    def _obs(self, s: GateState) -> tuple:
        target = jax.nn.one_hot(s.target, 4)
        if self.time_onehot:
            frac = jax.nn.one_hot(s.step, self.max_cycles + 1)
        else:
            frac = (s.step / self.max_cycles).astype(jnp.float32)[None]
        msg = jax.nn.one_hot(s.message, 4)
        dist = jnp.linalg.norm(s.pos - jnp.asarray(LANDMARKS)[s.target])
        speaker = jnp.concatenate([target, frac])[None]
        mover = jnp.concatenate([s.pos, msg, jnp.asarray(LANDMARKS).reshape(-1)])[None]
        gate = jnp.concatenate([dist[None], frac])[None]
        state = jnp.concatenate([target, s.pos, msg, dist[None], frac])
        return (speaker, mover, gate), state, dist

    def _timestep(self, s: GateState, reward: jax.Array) -> TimeStep:
        obs, state, _ = self._obs(s)
        return self.make_timestep(obs, self.all_available(), state, reward, False, s.step >= self.max_cycles)

    def _reset(self, key: jax.Array):
        k1, k2 = jax.random.split(key)
        s = GateState(jax.random.randint(k1, (), 0, 4), jax.random.uniform(k2, (2,), minval=-0.3, maxval=0.3),
                      jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return s, self._timestep(s, jnp.zeros((3,)))

    def _step(self, key: jax.Array, s: GateState, actions: tuple):
        del key
        say, move, gate = actions[0][0], actions[1][0], actions[2][0]
        pos = jnp.clip(s.pos + self.speed * jnp.clip(move, -1.0, 1.0), -1.5, 1.5)
        s = GateState(s.target, pos, say.astype(jnp.int32), s.step + 1)
        dist = jnp.linalg.norm(pos - jnp.asarray(LANDMARKS)[s.target])
        opened = gate == 1
        r = -0.2 * dist + jnp.where(opened, jnp.where(dist < self.radius, 1.0, -1.0), 0.0)
        return s, self._timestep(s, jnp.full((3,), r))


def scripted_return(env: SignalGate, key: jax.Array, episodes: int = 64) -> float:
    """Mean team return of the scripted policy (the speaker names the target, the mover walks to the
    landmark of the symbol it heard, the gate opens inside the radius)."""

    def episode(k):
        s, ts = env._reset(k)

        def step(carry, _):
            s, ts = carry
            goal = jnp.asarray(LANDMARKS)[s.message]
            d = goal - s.pos
            move = d / jnp.maximum(jnp.linalg.norm(d), 1e-6) * jnp.minimum(1.0, jnp.linalg.norm(d) / env.speed)
            gate = (ts.obs[2][0, 0] < env.radius).astype(jnp.int32)
            s2, ts2 = env._step(k, s, (s.target[None], move[None], gate[None]))
            return (s2, ts2), ts2.reward[0]

        _, r = jax.lax.scan(step, (s, ts), None, length=env.max_cycles)
        return r.sum()

    return float(jnp.mean(jax.vmap(episode)(jax.random.split(key, episodes))))
