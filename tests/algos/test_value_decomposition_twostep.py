"""The two-step game of Rashid et al. 2018 (Sec. 6.1, Table 1/Fig. 3): what a monotonic mixer can represent and an
additive one (VDN) or independent learners (IQL) cannot, learnt end to end on the engine (fixed keys, 4 seeds).

Agent 1's first action picks the second state: 2A pays 7 whatever the agents do, 2B pays
``[[0, 1], [1, 8]]``. Under uniform exploration (epsilon = 1, as in the paper) the additive fit of 2B values its
best joint action at 4.5 + 4.5 - 2.5 = 6.5 < 7 (VDN), an independent learner at 4.5 (IQL): both settle for 2A's 7.
2B's payoffs are monotone in each agent's action, so QMIX represents them and reaches the optimum 8.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxcache import compilation_cache

from trustmarl.algos import make_algorithm
from trustmarl.envs.base import AgentGroup, Discrete, MultiAgentEnv
from trustmarl.experiment.config import build_config

PAYOFF_2A = np.full((2, 2), 7.0, np.float32)
PAYOFF_2B = np.array([[0.0, 1.0], [1.0, 8.0]], np.float32)


@dataclasses.dataclass(frozen=True)
class TwoStepGame(MultiAgentEnv):
    """Rashid et al. 2018's two-step game: states 0 (start), 1 (2A), 2 (2B), observed one-hot by both agents."""

    @property
    def groups(self):
        return (AgentGroup("agent", ("agent_0", "agent_1"), 3, Discrete(2)),)

    @property
    def state_dim(self) -> int:
        return 3

    @property
    def max_episode_steps(self) -> int:
        return 2

    def _timestep(self, s, reward, terminated):
        onehot = jax.nn.one_hot(s, 3)
        return self.make_timestep((jnp.stack([onehot, onehot]),), self.all_available(), onehot,
                                  jnp.full((2,), reward, jnp.float32), terminated, False)

    def _reset(self, key):
        return jnp.zeros((), jnp.int32), self._timestep(jnp.zeros((), jnp.int32), 0.0, False)

    def _step(self, key, s, actions):
        a = actions[0]
        pay = jnp.where(s == 1, jnp.asarray(PAYOFF_2A)[a[0], a[1]], jnp.asarray(PAYOFF_2B)[a[0], a[1]])
        nxt = jnp.where(s == 0, 1 + a[0], s).astype(jnp.int32)
        return nxt, self._timestep(nxt, jnp.where(s == 0, 0.0, pay), s > 0)


def greedy_return(algo: str, seeds: int = 4, updates: int = 300) -> list[float]:
    """The greedy joint policy's return after ``updates`` updates of uniform exploration, per seed."""
    extra = {"algo.critic_lr": 3e-3, "algo.mixer_embed": 8, "algo.hypernet_hidden": 16} if algo == "qmix" else {}
    cfg = build_config(algo, "matrix/custom", {
        "algo.num_envs": 16, "algo.rollout_len": 2, "algo.buffer_size": 512, "algo.batch_size": 64,
        "algo.learning_starts": 64, "algo.hidden_sizes": [16], "algo.epsilon_start": 1.0, "algo.epsilon_end": 1.0,
        "algo.target_every": 20, "algo.actor_lr": 3e-3, "algo.team_reward": "mean", "algo.gamma": 0.99, **extra})
    a = make_algorithm(cfg, total_updates=updates, env=TwoStepGame())
    run = jax.jit(jax.vmap(lambda k: jax.lax.scan(lambda c, _: a.update(c), a.init(k), None, length=updates)[0]))
    params = run(jax.random.split(jax.random.PRNGKey(0), seeds)).actor_params
    eye, avail = np.eye(3, dtype=np.float32), (np.ones((seeds, 2, 2), bool),)
    act = lambda s: np.asarray(jax.vmap(a.greedy)(params, (np.broadcast_to(eye[s], (seeds, 2, 3)),), avail)[0])  # noqa: E731
    first, in_2a, in_2b = act(0), act(1), act(2)
    return [float(PAYOFF_2B[tuple(in_2b[i])] if first[i, 0] == 1 else PAYOFF_2A[tuple(in_2a[i])]) for i in range(seeds)]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with compilation_cache(tmp_path_factory.mktemp("jax_cache_twostep")):
        yield


def test_qmix_reaches_the_optimum_of_the_two_step_game():
    assert greedy_return("qmix") == [8.0] * 4


@pytest.mark.parametrize("algo", ["vdn", "iql"])
def test_vdn_and_iql_settle_for_the_safe_state(algo):
    assert greedy_return(algo) == [7.0] * 4
