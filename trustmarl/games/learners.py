"""Gradient learners for two-agent, two-action games on exact payoffs: IGA, IGA-PP, WoLF-IGA and MATRL.

Each learner is a pure step ``pol -> pol'`` on ``pol = (alpha, beta)`` (probabilities of action 0),
so a run is one ``lax.scan`` and thousands of games are one ``vmap``. Hyperparameters are those of
Wen et al. 2021, Table 2 and the reference code (``run_stateless.py``): start (0.9, 0.2), IGA/TPR
learning rate 0.02, best-response rate 0.03, IGA-PP prediction length 0.01, WoLF rates 0.06 / 0.02.

MATRL here is the IGA-based MATRL of Wen et al. 2021, section 4 / App. D (Algorithm 1 with IGA as the
independent learner) WITHOUT the reference code's ``kl_coeff * KL`` term, which is not a trust-region
penalty (it always pushes probabilities up): our reproduction of Table 1 drops it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from trustmarl.games.two_by_two import clip01, gradients, values
from trustmarl.trust.nash import SELECTIONS, solve_metagame

METHODS = ("iga", "iga_pp", "wolf", "matrl")


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Hyperparameters of the matrix-game learners (defaults: Wen et al. 2021, Table 2 / reference code).

    lr:              IGA step size, also MATRL's trust-payoff-region (TPR) step (reference code: 0.02).
    br_lr:           MATRL's best-response step size (Table 2: 0.03).
    pp_gamma:        IGA-PP's prediction length (reference code: 0.01).
    clip_prediction: clip IGA-PP's predicted opponent policy to [0, 1] (the reference code does not).
    wolf_lr_max:     WoLF-IGA's step when losing (Table 2: 0.06).
    wolf_lr_min:     WoLF-IGA's step when winning (Table 2: 0.02; the reference code used 0.01).
    selection:       meta-game equilibrium selection (``trustmarl.trust.nash.SELECTIONS``); ``"last"``
                     is the reference code's choice (nashpy's last equilibrium).
    rho:             force the meta-strategy (``1.0``: keep current policies = independent learning,
                     ``0.0``: always the candidates = IL-PP); ``None`` solves the meta-game.
    best_response:   False gives the "MATRL w/o BR" ablation: the next policy is the mixture itself.
    """

    lr: float = 0.02
    br_lr: float = 0.03
    pp_gamma: float = 0.01
    clip_prediction: bool = False
    wolf_lr_max: float = 0.06
    wolf_lr_min: float = 0.02
    selection: str = "last"
    rho: float | None = None
    best_response: bool = True

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.rho is not None and not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho must be None or in [0, 1], got {self.rho!r}")


class MatrlInfo(NamedTuple):
    """Per-iteration diagnostics of a MATRL step."""

    rho: Array  # [2] meta-strategy: probability of keeping the current policy
    found: Array  # bool: the meta-game solver found an equilibrium (else rho = 1)
    candidate: Array  # [2] the TPR candidates (alpha_hat, beta_hat)


def iga_step(payoffs: ArrayLike, pol: Array, lr: float) -> Array:
    """Infinitesimal gradient ascent with a finite step, projected (Singh et al. 2000)."""
    g1, g2 = gradients(payoffs, pol[0], pol[1])
    return clip01(jnp.stack([pol[0] + lr * g1, pol[1] + lr * g2]))


def iga_pp_step(payoffs: ArrayLike, pol: Array, lr: float, gamma: float, clip_prediction: bool = False) -> Array:
    """IGA with policy prediction (Zhang & Lesser 2010): each agent ascends against the opponent's
    policy predicted ``gamma`` ahead along its own gradient."""
    g1, g2 = gradients(payoffs, pol[0], pol[1])
    predicted = jnp.stack([pol[0] + gamma * g1, pol[1] + gamma * g2])
    if clip_prediction:
        predicted = clip01(predicted)
    h1, _ = gradients(payoffs, pol[0], predicted[1])
    _, h2 = gradients(payoffs, predicted[0], pol[1])
    return clip01(jnp.stack([pol[0] + lr * h1, pol[1] + lr * h2]))


def wolf_step(payoffs: ArrayLike, pol: Array, nash: Array, lr_min: float, lr_max: float) -> Array:
    """WoLF-IGA (Bowling & Veloso 2002): the small step when winning, i.e. when the current policy earns
    more than the equilibrium policy would against the opponent's current policy, else the large one."""
    v = values(payoffs, pol[0], pol[1])
    v1_eq = values(payoffs, nash[0], pol[1])[0]
    v2_eq = values(payoffs, pol[0], nash[1])[1]
    lr1 = jnp.where(v[0] > v1_eq, lr_min, lr_max)
    lr2 = jnp.where(v[1] > v2_eq, lr_min, lr_max)
    g1, g2 = gradients(payoffs, pol[0], pol[1])
    return clip01(jnp.stack([pol[0] + lr1 * g1, pol[1] + lr2 * g2]))


def matrix_metagame(payoffs: ArrayLike, pol: Array, candidate: Array) -> Array:
    """Exact meta-game ``[2, 2, 2]``: ``G_k[x, y] = V_k(pi_1^x, pi_2^y) - V_k(pi)`` with ``pi^0`` the current
    and ``pi^1`` the candidate policy (Wen et al. 2021, eq. 5; in a one-state game the expected advantage
    is exactly this value difference). ``G_k[0, 0] = 0``."""
    pol1 = jnp.stack([pol[0], candidate[0]])
    pol2 = jnp.stack([pol[1], candidate[1]])
    v_now = values(payoffs, pol[0], pol[1])
    joint = jax.vmap(lambda a: jax.vmap(lambda b: values(payoffs, a, b) - v_now)(pol2))(pol1)  # [x, y, k]
    return jnp.moveaxis(joint, -1, 0).at[:, 0, 0].set(0.0)


def matrl_step(payoffs: ArrayLike, pol: Array, key: Array, config: LearnerConfig = LearnerConfig()) -> tuple[Array, MatrlInfo]:
    """One IGA-based MATRL iteration (Wen et al. 2021, Algorithm 1 with IGA as the independent learner):

    1. TPR: ``alpha_hat = clip(alpha + lr dV_1/dalpha(beta))``, same for ``beta_hat`` (eq. 2);
    2. meta-game on {current, candidate} per agent, exact payoffs (eq. 5), and its Nash ``rho``;
    3. TSR: ``alpha_bar = rho_1 alpha + (1 - rho_1) alpha_hat`` (section 3.2);
    4. best response from the current policy against the other's aggregate (eq. 6):
       ``alpha' = clip(alpha + br_lr dV_1/dalpha(beta_bar))`` (reference code: the BR starts at alpha).
    """
    candidate = iga_step(payoffs, pol, config.lr)
    if config.rho is None:
        g = matrix_metagame(payoffs, pol, candidate)
        nash = solve_metagame(g, key, selection=config.selection, tol=0.0)
        rho, found = nash.rho, nash.found
    else:
        rho, found = jnp.full((2,), config.rho, pol.dtype), jnp.asarray(True)
    mixed = rho * pol + (1.0 - rho) * candidate
    if config.best_response:
        g1, _ = gradients(payoffs, pol[0], mixed[1])
        _, g2 = gradients(payoffs, mixed[0], pol[1])
        new = clip01(jnp.stack([pol[0] + config.br_lr * g1, pol[1] + config.br_lr * g2]))
    else:
        new = mixed
    return new, MatrlInfo(rho=rho, found=found, candidate=candidate)


def learner_step(method: str, config: LearnerConfig = LearnerConfig()):
    """``step(payoffs, pol, key, nash) -> (pol', rho)`` for ``method`` in ``METHODS`` (``rho`` is NaN
    except for MATRL; ``nash`` is only read by WoLF)."""
    if method not in METHODS:
        raise ValueError(f"unknown matrix-game learner {method!r}; expected one of {METHODS}")

    def step(payoffs, pol, key, nash):
        nan = jnp.full((2,), jnp.nan, pol.dtype)
        if method == "iga":
            return iga_step(payoffs, pol, config.lr), nan
        if method == "iga_pp":
            return iga_pp_step(payoffs, pol, config.lr, config.pp_gamma, config.clip_prediction), nan
        if method == "wolf":
            return wolf_step(payoffs, pol, nash, config.wolf_lr_min, config.wolf_lr_max), nan
        new, info = matrl_step(payoffs, pol, key, config)
        return new, info.rho

    return step


def run_learner(
    method: str,
    payoffs: ArrayLike,
    init: ArrayLike,
    n_iters: int,
    key: Array | None = None,
    nash: ArrayLike | None = None,
    config: LearnerConfig = LearnerConfig(),
) -> tuple[Array, Array]:
    """Run ``n_iters`` iterations; returns ``(trajectory [n_iters + 1, 2], rho [n_iters, 2])``.

    ``trajectory[0]`` is ``init``; ``trajectory[t + 1]`` the policy after iteration ``t``. ``nash`` is the
    equilibrium WoLF compares against (default: the first one of support enumeration). Vmap over games.
    """
    from trustmarl.games.two_by_two import first_nash

    step = learner_step(method, config)
    payoffs = jnp.asarray(payoffs)
    init = jnp.asarray(init, payoffs.dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    nash = first_nash(payoffs) if nash is None else jnp.asarray(nash, payoffs.dtype)

    def body(pol, k):
        new, rho = step(payoffs, pol, k, nash)
        return new, (new, rho)

    _, (traj, rho) = jax.lax.scan(body, init, jax.random.split(key, n_iters))
    return jnp.concatenate([init[None], traj]), rho
