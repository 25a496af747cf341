"""MAMD and MAMD-OP: MAAC with mirror-descent actors anchored to a lagged old policy (Li et al. 2022).

MAMD (Li, Wang, Jin, Sheng & Zha 2022, "Dealing with Non-Stationarity in MARL via Trust-Region
Decomposition", Algorithm 2) keeps MAAC's attention critic, soft critic target, counterfactual
baseline and schedule (:mod:`trustmarl.algos.off_policy.maac`), and replaces each actor's entropy-
regularised loss by an off-policy mirror-descent step (MDPO, Tomar et al. 2020) whose Bregman term is
a Tsallis-``q`` penalty to the lagged old policy ``pi^old`` (a hard copy of the actor every
``old_policy_lag`` = m gradient iterations, kept by MAAC):

    L_pi_i = E_{o ~ B, a~_i ~ pi_i}[ log pi_i(a~_i | o_i) sg( (ln_q pi_i(a~_i) - ln_q pi_i^old(a~_i)) / c - A_i ) ]
             + policy_reg mean(logits^2)                                       (Li et al. 2022, eq. 10)

with the same trust-region coefficient ``c`` for every agent (a larger ``c`` = a weaker penalty = a
larger trust region). For ``q = 1`` the penalty's expectation is ``KL(pi_i || pi_i^old)``; for ``q < 1``
the code's form ``E[ln_q pi - ln_q pi^old]`` is not a divergence (it can be negative; the docs show
the numbers), so ``penalty=tsallis_relative_entropy`` offers the proper Tsallis relative entropy
``(1 - sum_a pi^q pi_old^(1-q)) / (1 - q)`` as an exact, differentiable per-state term instead. The
entropy bonus leaves the actor; it stays in the critic's soft target (as in the authors' code).

MAMD-OP (Li et al. 2022, Appendix D) applies the mirror-descent loss to a chosen subset of agents
(``constrained``, one flag per agent); the others keep MAAC's loss. The paper's Spread-3 variants set
no agent (Sep, = MAAC), the coupled pair (Mix) or every agent (Ful, = MAMD).
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.maac import MAAC, MAACConfig, PolicyTerms
from trustmarl.trust.tsallis import tsallis_penalty_sample, tsallis_relative_entropy
from trustmarl.validation import ConfigError, positive

PENALTIES = ("code", "tsallis_relative_entropy")


@dataclasses.dataclass
class MAMDConfig(MAACConfig):
    """MAMD hyperparameters: MAAC's (Li et al. 2022, Tables 1-2) plus the mirror-descent step."""

    name: str = "mamd"
    tsallis_q: float = 0.2  # q of the Tsallis logarithm (Li et al. 2022, Table 1; the authors' code runs 1.0)
    md_coef: float = 100.0  # c: the penalty is divided by it (the authors' code: tr_scale = 100)
    penalty: str = "code"  # code: E[ln_q pi - ln_q pi_old] (score function) | tsallis_relative_entropy (exact)
    constrained: tuple[bool, ...] | None = None  # per agent: mirror-descent loss (true) or MAAC's; None: mamd all, mamd_op all but the last

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {**MAACConfig.CHOICES, "penalty": PENALTIES}

    def validate(self) -> None:
        super().validate()
        positive(self, "tsallis_q", "md_coef")

    def default_mask(self, n_agents: int) -> tuple[bool, ...]:
        """Without ``constrained``: mirror descent for every agent."""
        return (True,) * n_agents

    def check_env(self, env) -> None:
        """The agent mask fits the environment (one flag per agent, in the env's agent order)."""
        if self.constrained is not None and len(self.constrained) != env.n_agents:
            agents = ", ".join(a for g in env.groups for a in g.agents)
            raise ConfigError(
                f"algo.constrained has {len(self.constrained)} flags but the env has {env.n_agents} agents "
                f"({agents}): give one true/false per agent"
            )


@dataclasses.dataclass
class MAMDOPConfig(MAMDConfig):
    """MAMD-OP: MAMD on the agents of ``constrained`` only (Li et al. 2022, Appendix D)."""

    name: str = "mamd_op"

    def default_mask(self, n_agents: int) -> tuple[bool, ...]:
        """Without ``constrained``: every agent but the last (on Spread-3 the paper's Mix variant)."""
        return (True,) * (n_agents - 1) + (False,)


class MAMD(MAAC):
    ENV_BLOCKS = True  # run key env_blocks: MAAC's reductions; the penalties are per sample (their batch means enter gradients)

    def __init__(self, env, cfg: MAMDConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        n = self.n_agents
        mask = cfg.default_mask(n) if cfg.constrained is None else tuple(bool(c) for c in cfg.constrained)
        self.constrained = jnp.asarray(mask, bool)  # [N]

    def penalty_terms(self, terms: PolicyTerms) -> jax.Array:
        """``[B, N]``: ``ln_q pi_i(a~_i) - ln_q pi_i^old(a~_i)``, the per-sample mirror-descent penalty."""
        return tsallis_penalty_sample(terms.logp_a, terms.old_logp_a, self.cfg.tsallis_q)

    def radii(self, state) -> jax.Array:
        """The penalty's divisor per agent ``[N]``: MAMD's one coefficient ``c`` (MAMT learns one per agent)."""
        return jnp.full((self.n_agents,), self.cfg.md_coef)

    def actor_coefficient(self, state, terms: PolicyTerms):
        maac, _ = super().actor_coefficient(state, terms)
        if self.cfg.penalty == "code":  # Li et al. 2022, eq. 10: (ln_q pi - ln_q pi_old) / c - A
            md = self.penalty_terms(terms) / self.radii(state) - terms.adv
        else:  # the exact penalty is added by actor_penalty; the score-function part is the advantage alone
            md = -terms.adv
        return jnp.where(self.constrained, md, maac), {}

    def actor_penalty(self, state, terms: PolicyTerms) -> jax.Array:
        """``[N]``: with ``penalty=tsallis_relative_entropy`` the batch mean of ``D_q(pi_i || pi_i^old) / c``
        (differentiable, exact over actions) for the constrained agents; 0 otherwise."""
        if self.cfg.penalty == "code":
            return super().actor_penalty(state, terms)
        d = jnp.concatenate([tsallis_relative_entropy(jnp.exp(lp), jnp.exp(olp), self.cfg.tsallis_q)
                             for lp, olp in zip(terms.logp, terms.old_logp)], -1)  # [B, N]
        return jnp.where(self.constrained, d.mean(0) / self.radii(state), 0.0)


register_algo(
    "mamd", MAMDConfig, MAMD,
    "MAMD: MAAC's critic with mirror-descent actors, a Tsallis penalty to a lagged old policy (Li et al. 2022, Alg. 2)",
    family="off-policy", action_kinds=("discrete",),
)
register_algo(
    "mamd_op", MAMDOPConfig, MAMD,
    "MAMD-OP: MAMD's mirror-descent loss for a chosen subset of agents, MAAC's for the others (Li et al. 2022, App. D)",
    family="off-policy", action_kinds=("discrete",),
)
