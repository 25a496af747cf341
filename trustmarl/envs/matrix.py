"""One-state games: cooperative matrix games, the differential game of Kuba et al. 2022, and general-sum games.

Every game here has a single state and episodes of length one: after the first step the episode
is ``terminated`` and ``MultiAgentEnv.step`` resets it. In the cooperative games all agents receive the
same team reward; in the general-sum games (``GeneralSumMatrixGame`` and the named 2x2 games of Wen et
al. 2021) each agent receives its own payoff.

Observation (every agent) and global state are the constant vector ``[1.0]`` (one feature), so a
policy of such a game is a state-independent distribution over actions. Agent identities are *not*
part of the observation: that is what makes parameter sharing suboptimal in Proposition 1
(Kuba et al. 2022, Section 2.3); an algorithm that wants agent ids adds them itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.registry import register

# The climbing game (Claus & Boutilier, 1998): a classic 2-agent, 3-action cooperative game whose
# optimum (0, 0) is surrounded by heavy penalties. Default payoff of ``matrix/custom``.
CLIMBING_GAME: tuple = ((11.0, -30.0, 0.0), (-30.0, 7.0, 6.0), (0.0, 0.0, 5.0))


def _to_nested_tuple(x: Any) -> Any:
    """Convert a (nested) sequence or array of numbers to nested tuples of floats (hashable)."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return tuple(_to_nested_tuple(v) for v in x)
    return float(x)


def _agent_names(n: int) -> tuple[str, ...]:
    return tuple(f"agent_{i}" for i in range(n))


def _groups_for(counts: tuple[int, ...]) -> tuple[AgentGroup, ...]:
    """One group per run of consecutive agents with equal action counts (``"agent"`` if only one)."""
    names = _agent_names(len(counts))
    runs = []
    start = 0
    for _, run in itertools.groupby(range(len(counts)), key=lambda i: counts[i]):
        run = list(run)
        runs.append((start, start + len(run)))
        start += len(run)
    single = len(runs) == 1
    return tuple(
        AgentGroup(
            name="agent" if single else f"group_{k}",
            agents=names[lo:hi],
            obs_dim=1,
            action_space=Discrete(counts[lo]),
        )
        for k, (lo, hi) in enumerate(runs)
    )


def _joint_index(actions: tuple, counts: tuple[int, ...]) -> jax.Array:
    """Row-major flat index of the joint action (``actions`` is a tuple over groups)."""
    joint = jnp.concatenate([jnp.asarray(a, dtype=jnp.int32).reshape(-1) for a in actions])
    strides = np.cumprod((1,) + counts[:0:-1])[::-1]  # row-major strides
    return jnp.sum(joint * jnp.asarray(strides, dtype=jnp.int32))


class _OneStateGame(MultiAgentEnv):
    """Shared machinery: constant observation/state, one-step episodes, a team reward."""

    def _team_reward(self, actions: tuple) -> jax.Array:
        """Scalar team reward of the joint action (``actions`` is a tuple over groups)."""
        raise NotImplementedError

    @property
    def max_episode_steps(self) -> int:
        return 1

    @property
    def state_dim(self) -> int:
        return 1

    def _timestep(self, reward: jax.Array, terminated: bool) -> TimeStep:
        obs = tuple(jnp.ones((g.n, g.obs_dim), dtype=jnp.float32) for g in self.groups)
        state = jnp.ones((self.state_dim,), dtype=jnp.float32)
        return self.make_timestep(obs, self.all_available(), state, reward, terminated, False)

    def _reset(self, key: jax.Array) -> tuple[jax.Array, TimeStep]:
        del key  # a single, deterministic state
        reward = jnp.zeros((self.n_agents,), dtype=jnp.float32)
        return jnp.zeros((), dtype=jnp.int32), self._timestep(reward, False)

    def _rewards(self, actions: tuple) -> jax.Array:
        """``[n_agents]`` rewards of the joint action: the team reward repeated (general-sum games override)."""
        team = jnp.asarray(self._team_reward(actions), dtype=jnp.float32)
        return jnp.full((self.n_agents,), team, dtype=jnp.float32)

    def _step(self, key: jax.Array, state: jax.Array, actions: tuple) -> tuple[jax.Array, TimeStep]:
        del key
        return state + 1, self._timestep(self._rewards(actions), True)


@dataclasses.dataclass(frozen=True)
class MatrixGame(_OneStateGame):
    """A one-state cooperative game given by a payoff tensor of shape ``[A_1, ..., A_n]``.

    Agent ``i`` picks an action in ``{0, ..., A_i - 1}``; every agent receives
    ``payoff[a_1, ..., a_n]``. Consecutive agents with the same number of actions form one group
    (named ``"agent"`` when there is only one group, else ``"group_<k>"``), so the global agent
    order is agent 0, 1, ..., n-1. ``payoff`` may be given as nested lists or an array; it is stored
    as nested tuples so the environment stays hashable.
    """

    payoff: tuple = CLIMBING_GAME  # the team reward of every joint action, an n-dimensional table

    description = "One-state cooperative matrix game with a user-given payoff tensor (default: climbing game)."

    def __post_init__(self) -> None:
        object.__setattr__(self, "payoff", _to_nested_tuple(self.payoff))

    @property
    def payoff_array(self) -> np.ndarray:
        """The payoff tensor as a float32 numpy array."""
        return np.asarray(self.payoff, dtype=np.float32)

    @property
    def action_counts(self) -> tuple[int, ...]:
        return tuple(int(a) for a in self.payoff_array.shape)

    def validate(self) -> None:
        try:
            arr = np.asarray(self.payoff, dtype=np.float64)
        except ValueError as e:
            raise ValueError(f"payoff must be a rectangular (nested) tensor of numbers, got {self.payoff!r}") from e
        if arr.ndim < 1:
            raise ValueError(f"payoff must have rank >= 1 (one axis per agent), got a scalar {self.payoff!r}")
        for i, a in enumerate(arr.shape):
            if a < 2:
                raise ValueError(
                    f"payoff axis {i} (agent {i}) has {a} action(s); every agent needs >= 2 actions "
                    f"(payoff shape {arr.shape})"
                )
        if not np.all(np.isfinite(arr)):
            raise ValueError("payoff entries must be finite numbers")

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return _groups_for(self.action_counts)

    def _team_reward(self, actions: tuple) -> jax.Array:
        return jnp.asarray(self.payoff_array.reshape(-1))[_joint_index(actions, self.action_counts)]


def proposition1_payoff(n: int) -> np.ndarray:
    """Payoff tensor ``[2]*n`` of Kuba et al. 2022, Proposition 1 (Section 2.3): 1 on ``(0^{n/2},1^{n/2})``
    and ``(1^{n/2},0^{n/2})``, 0 elsewhere."""
    if n < 2 or n % 2:
        raise ValueError(f"n_agents must be an even integer >= 2, got {n!r}")
    payoff = np.zeros((2,) * n, dtype=np.float32)
    half = n // 2
    payoff[(0,) * half + (1,) * half] = 1.0
    payoff[(1,) * half + (0,) * half] = 1.0
    return payoff


@dataclasses.dataclass(frozen=True)
class Proposition1Game(_OneStateGame):
    """Kuba et al. 2022, Proposition 1 (Section 2.3): ``n`` even agents, binary actions, team reward 1 iff the
    joint action is ``(0^{n/2}, 1^{n/2})`` or ``(1^{n/2}, 0^{n/2})``, else 0. The optimum is 1; the
    best shared policy only reaches ``2 / 2^n``."""

    n_agents: int = 4  # type: ignore[assignment]  # agents (even)

    description = "Kuba et al. 2022, Proposition 1 game: parameter sharing is exponentially suboptimal (n even agents)."

    def validate(self) -> None:
        n = self.n_agents
        if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
            raise ValueError(f"n_agents must be an even integer >= 2, got {n!r}")

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return (AgentGroup("agent", _agent_names(self.n_agents), 1, Discrete(2)),)

    def _team_reward(self, actions: tuple) -> jax.Array:
        a = jnp.asarray(actions[0], dtype=jnp.int32)
        half = self.n_agents // 2
        first, second = a[:half], a[half:]
        zeros_ones = jnp.all(first == 0) & jnp.all(second == 1)
        ones_zeros = jnp.all(first == 1) & jnp.all(second == 0)
        return (zeros_ones | ones_zeros).astype(jnp.float32)  # Kuba et al. 2022, Section 2.3 (Proposition 1)


@dataclasses.dataclass(frozen=True)
class DifferentialGame(_OneStateGame):
    """Kuba et al. 2022, Figure 1 (Section 4.3): two agents, one state, actions ``a^i`` in R, reward
    ``a^1 * a^2``.

    The action space is declared ``Box(dim=1, low=-10, high=10)`` so that samplers have a range,
    but the environment does **not** clip: the reward uses the raw actions (a Gaussian policy
    ``N(mu, 1)`` then gives ``E[r] = mu^1 mu^2`` exactly).

    ``offset`` shifts the actions, ``r = (a^1 + o^1)(a^2 + o^2)``: the same game in shifted coordinates.
    Policies start with means near 0, so ``offset=(-0.25, 0.25)`` starts training at the paper's
    ``mu_0 = (-0.25, 0.25)`` (``J_0 = -0.0625``) without touching the policy's initialisation."""

    description = "Kuba et al. 2022, Figure 1 differential game: two agents, continuous actions, reward a1 * a2."
    offset: tuple = (0.0, 0.0)  # added to each agent's action before the reward (the starting point of Figure 1)

    def validate(self) -> None:
        super().validate()
        if len(self.offset) != 2 or not all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in self.offset):
            raise ValueError(f"offset must be two numbers (one per agent), got {self.offset!r}")

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return (AgentGroup("agent", _agent_names(2), 1, Box(dim=1, low=-10.0, high=10.0)),)

    def _team_reward(self, actions: tuple) -> jax.Array:
        a = jnp.asarray(actions[0], dtype=jnp.float32).reshape(2) + jnp.asarray(self.offset, dtype=jnp.float32)
        return a[0] * a[1]  # Kuba et al. 2022, Section 4.3 (Figure 1): r(a^1, a^2) = a^1 a^2


# Named two-agent, two-action general-sum games of the MATRL reference code (Wen et al. 2021, section 4 and
# App. D; ``matrix_games/stateless_games.py``), as payoff tensors ``[n_agents, A_1, A_2]`` = ``[2, 2, 2]``:
# ``P[k, a_1, a_2]`` is agent k's payoff. Equilibria as (P(agent 1 plays 0), P(agent 2 plays 0)).
MATCHING_PENNIES = (((1.0, -1.0), (-1.0, 1.0)), ((-1.0, 1.0), (1.0, -1.0)))  # unique NE (1/2, 1/2)
PRISONERS_DILEMMA = (((3.0, 1.0), (4.0, 2.0)), ((3.0, 4.0), (1.0, 2.0)))  # unique NE (0, 0): both defect
CHICKEN = (((3.0, 2.0), (4.0, 1.0)), ((3.0, 4.0), (2.0, 1.0)))  # NE (1, 0), (0, 1) and a mixed one
STAG_HUNT = (((4.0, 1.0), (3.0, 2.0)), ((4.0, 3.0), (1.0, 2.0)))  # NE (1, 1), (0, 0) and a mixed one
GENERAL_SUM_GAMES: dict[str, tuple] = {
    "matching_pennies": MATCHING_PENNIES,
    "prisoners_dilemma": PRISONERS_DILEMMA,
    "chicken": CHICKEN,
    "stag_hunt": STAG_HUNT,
    # further games of the reference code (not registered as environments; use matrix/general_sum)
    "rotation": (((0.0, 3.0), (1.0, 2.0)), ((3.0, 2.0), (0.0, 1.0))),
    "deadlock": (((1.0, 2.0), (3.0, 4.0)), ((1.0, 3.0), (2.0, 4.0))),
    "harmony": (((4.0, 3.0), (2.0, 1.0)), ((4.0, 2.0), (3.0, 1.0))),
    "coordination_1": (((1.0, 0.0), (0.0, 1.0)), ((1.0, 0.0), (0.0, 1.0))),
    "coordination_2": (((4.0, 2.0), (1.0, 3.0)), ((3.0, 2.0), (1.0, 4.0))),
}


@dataclasses.dataclass(frozen=True)
class GeneralSumMatrixGame(_OneStateGame):
    """A one-state general-sum game given by a payoff tensor of shape ``[n_agents, A_1, ..., A_n]``.

    Agent ``i`` picks an action in ``{0, ..., A_i - 1}`` and receives ``payoffs[i, a_1, ..., a_n]``
    (``TimeStep.reward`` is per agent, so each agent learns from its own payoff). Groups as in
    :class:`MatrixGame`. The default is matching pennies.
    """

    payoffs: tuple = MATCHING_PENNIES  # [n_agents, A_1, ..., A_n]: each agent's payoff of every joint action

    description = "One-state general-sum game: payoffs [n_agents, A_1, ..., A_n], one payoff per agent (default: matching pennies)."
    cooperative = False  # each agent its own payoff: no team reward

    def __post_init__(self) -> None:
        object.__setattr__(self, "payoffs", _to_nested_tuple(self.payoffs))

    @property
    def payoff_array(self) -> np.ndarray:
        """The payoff tensor ``[n_agents, A_1, ..., A_n]`` as a float32 numpy array."""
        return np.asarray(self.payoffs, dtype=np.float32)

    @property
    def action_counts(self) -> tuple[int, ...]:
        return tuple(int(a) for a in self.payoff_array.shape[1:])

    def validate(self) -> None:
        try:
            arr = np.asarray(self.payoffs, dtype=np.float64)
        except ValueError as e:
            raise ValueError(
                f"payoffs must be a rectangular (nested) tensor [n_agents, A_1, ..., A_n] of numbers, got {self.payoffs!r}"
            ) from e
        if arr.ndim < 2:
            raise ValueError(
                f"payoffs must have shape [n_agents, A_1, ..., A_n] (rank >= 2), got shape {arr.shape}"
            )
        if arr.shape[0] != arr.ndim - 1:
            raise ValueError(
                f"payoffs has shape {arr.shape}: the first axis must have one entry per agent, i.e. "
                f"{arr.ndim - 1} for {arr.ndim - 1} action axes (shape [n_agents, A_1, ..., A_n])"
            )
        for i, a in enumerate(arr.shape[1:]):
            if a < 2:
                raise ValueError(
                    f"payoffs axis {i + 1} (agent {i}) has {a} action(s); every agent needs >= 2 actions "
                    f"(payoffs shape {arr.shape})"
                )
        if not np.all(np.isfinite(arr)):
            raise ValueError("payoffs entries must be finite numbers")

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return _groups_for(self.action_counts)

    def _rewards(self, actions: tuple) -> jax.Array:
        flat = jnp.asarray(self.payoff_array.reshape(self.n_agents, -1))
        return flat[:, _joint_index(actions, self.action_counts)]


def _named_game(name: str, payoffs: tuple, doc: str) -> type:
    """A general-sum game with fixed payoffs (no configurable hyperparameters)."""
    cls = dataclasses.make_dataclass(
        name,
        [("payoffs", tuple, dataclasses.field(default=payoffs, init=False))],
        bases=(GeneralSumMatrixGame,),
        frozen=True,
        namespace={"description": doc, "__doc__": doc, "__module__": __name__},
    )
    return cls


MatchingPennies = _named_game(
    "MatchingPennies", MATCHING_PENNIES, "Matching pennies (zero-sum, 2 agents x 2 actions): unique NE (1/2, 1/2)."
)
PrisonersDilemma = _named_game(
    "PrisonersDilemma", PRISONERS_DILEMMA, "Prisoner's dilemma (2 agents x 2 actions): unique NE, both play action 1."
)
Chicken = _named_game("Chicken", CHICKEN, "Chicken (2 agents x 2 actions): two pure NE (one yields) and a mixed one.")
StagHunt = _named_game("StagHunt", STAG_HUNT, "Stag hunt (2 agents x 2 actions): NE (stag, stag), (hare, hare) and a mixed one.")


register("matrix/custom", MatrixGame, MatrixGame.description)
register("matrix/proposition1", Proposition1Game, Proposition1Game.description)
register("matrix/differential", DifferentialGame, DifferentialGame.description)
register("matrix/general_sum", GeneralSumMatrixGame, GeneralSumMatrixGame.description)
register("matrix/matching_pennies", MatchingPennies, MatchingPennies.description)
register("matrix/prisoners_dilemma", PrisonersDilemma, PrisonersDilemma.description)
register("matrix/chicken", Chicken, Chicken.description)
register("matrix/stag_hunt", StagHunt, StagHunt.description)
