"""HATRPO: sequential per-agent trust-region steps (Kuba et al. 2022, Section 4.1, eq. 8, App. D Algorithm 2).

Agent i_m, in the iteration's random order, takes one natural-gradient step on the factor-weighted
surrogate  E[ r^{i_m}(θ) · M^{i_{1:m}} ]  (eq. 10; M from the already-updated agents) subject to the
mean KL(π_old^{i_m} || π_θ^{i_m}) ≤ δ: conjugate gradient on Fisher-vector products of the KL,
step size sqrt(2δ / xᵀHx) (eq. 8), then backtracking until the KL is below δ and the surrogate
improves by at least ``accept_ratio`` of the linear prediction; a rejected search keeps the old
parameters and is logged. The loop over agents, the factor and the critic are shared with HAPPO.
Recurrent actors are supported: the surrogate and the KL unroll the agent's GRU over the stored
sequences (see ``happo.Sequential.agent_dist``), so the Fisher-vector products differentiate through
the unroll.
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.base import block_sum
from trustmarl.algos.on_policy.happo import AgentData, HAPPOConfig, Sequential
from trustmarl.validation import ConfigError, positive, positive_int
from trustmarl.trust.natural import backtracking_line_search, fisher_outer_product, flatten, trpo_step


@dataclasses.dataclass
class HATRPOConfig(HAPPOConfig):
    """HATRPO hyperparameters (Kuba et al. 2022, App. D; the authors' code and HARL where the paper is silent)."""

    name: str = "hatrpo"
    kl_threshold: float = 0.01  # δ
    cg_iters: int = 10  # conjugate-gradient iterations for the natural-gradient direction
    cg_damping: float = 0.1  # damping added to the Fisher-vector products
    ls_steps: int = 10  # backtracking line-search steps
    backtrack: float = 0.5  # step shrink factor of each line-search step
    accept_ratio: float = 0.5  # accept a step when its improvement is at least this fraction of the expected one
    ent_coef: float = 0.0  # unused: HATRPO has no entropy bonus

    _STEP = "each agent takes one conjugate-gradient step with a line search (algo.kl_threshold, algo.cg_iters, algo.ls_steps)"
    UNUSED: typing.ClassVar[dict[str, str]] = {
        **HAPPOConfig.UNUSED,
        "epochs": _STEP,
        "minibatches": _STEP + "; the critic uses algo.critic_minibatches",
        "actor_lr": _STEP + "; the critic uses algo.critic_lr",
        "clip_eps": "the trust region is the KL bound algo.kl_threshold, not a clip range",
        "clip_rule": "the trust region is the KL bound algo.kl_threshold, not a clip range",
        "ent_coef": "HATRPO has no entropy bonus (Kuba et al. 2022, eq. 8)",
    }

    def validate(self) -> None:
        super().validate()
        positive(self, "kl_threshold", "backtrack")
        positive_int(self, "cg_iters", "ls_steps")
        if not 0 < self.backtrack < 1:
            raise ConfigError(f"algo.backtrack={self.backtrack!r} must be in (0, 1)")
        if not 0 <= self.accept_ratio < 1:
            raise ConfigError(f"algo.accept_ratio={self.accept_ratio!r} must be in [0, 1)")
        if self.cg_damping < 0:
            raise ConfigError(f"algo.cg_damping={self.cg_damping!r} must be >= 0")


class HATRPO(Sequential):
    # run key env_blocks: the surrogate, its gradient, the Fisher-vector products and the KL are sums over all blocks'
    # samples divided by their active count (block_sum), so every block solves the same CG and line search; the critic as HAPPO's
    ENV_BLOCKS = True

    def kl(self, g: int, old_dist: tuple, new_dist: tuple, avail: jax.Array) -> jax.Array:
        """Exact per-sample KL(old || new) (not the reference code's sum_a [e^d - 1 - d] approximation)."""
        return self.dists[g].kl(old_dist, new_dist, avail)

    def fisher(self, g: int, old_dist: tuple, d: tuple, w: jax.Array) -> tuple:
        """The Fisher metric of the old distribution applied to a tangent ``d`` of its parameters, per
        sample weighted by ``w`` (the masked-mean weights): categorical log-probs ``p ⊙ d``; Gaussian
        (mean, log σ) ``(d_μ / σ², 2 d_logσ)``."""
        return self.dists[g].fisher(old_dist, d, w)

    def agent_update(self, g, params, opt, i, data: AgentData, key):
        cfg = self.cfg
        flat, unravel = flatten(params)
        weight = jax.lax.stop_gradient(data.factor * data.adv)  # M^{i_{1:m}} · Â, eq. 10
        # batch means over the active samples of all env blocks (run key env_blocks; one block: the masked mean): each
        # block's part is its sum over the whole batch's count, and block_sum adds the parts (gradients: the parts' sum)
        mask = jnp.broadcast_to(data.active, data.logp_old.shape)
        count = jnp.maximum(block_sum(jnp.sum(mask)), 1.0)
        part = lambda x: jnp.sum(x * mask) / count  # noqa: E731

        def surrogate_part(x):  # Kuba et al. 2022, eq. 10 / App. D: mean of r^{i_m}(θ) · M^{i_{1:m}}
            _, logp = self.agent_log_prob(g, unravel(x), i, data)
            return part(jnp.exp(logp - data.logp_old) * weight)

        def dist_of(x):
            return self.agent_dist(g, unravel(x), i, data.obs, data.avail, data.hidden, data.reset)

        # The trust region is centred on the policy just before this agent's step (Kuba et al. 2022,
        # Algorithm 1 / eq. 7: each agent's KL is to its own current policy). For separate agents that
        # is the behaviour policy; a shared network (HARL's share_param) has already been moved by the
        # agents earlier in the order, so both the KL and its Fisher are taken at the moved parameters.
        pre_dist = jax.lax.stop_gradient(dist_of(flat)) if self.shared else jax.tree.map(jax.lax.stop_gradient, data.dist)

        def mean_kl(x):  # the trust region: mean KL(π_pre || π_θ) over the batch
            return block_sum(part(self.kl(g, pre_dist, dist_of(x), data.avail)))

        surrogate = lambda x: block_sum(surrogate_part(x))  # noqa: E731
        surr_old, grad = block_sum(jax.value_and_grad(surrogate_part)(flat))
        # the Hessian of mean_kl at θ_pre, as J^T F J (Fisher identity); equal to make_fvp(mean_kl, ...) there; the
        # blocks' products summed, the damping added once
        w = data.active / count
        fvp_part = fisher_outer_product(dist_of, flat, lambda d: self.fisher(g, pre_dist, d, w), 0.0)
        fvp = lambda v: block_sum(fvp_part(v)) + cfg.cg_damping * v  # noqa: E731
        full_step, expected, step_size = trpo_step(grad, fvp, cfg.kl_threshold, cfg.cg_iters)  # eq. 8
        new_flat, accepted, steps, kl_reached, improvement = backtracking_line_search(
            surrogate, mean_kl, flat, full_step, expected, surr_old, cfg.kl_threshold,
            cfg.accept_ratio, cfg.backtrack, cfg.ls_steps,
        )
        metrics = {
            "policy_loss": -(surr_old + improvement),  # minus the surrogate after the (accepted or no) step
            "accepted": accepted.astype(jnp.float32),
            "ls_steps": steps.astype(jnp.float32),
            "kl_reached": kl_reached,
            "improvement_predicted": expected,
            "improvement_realised": improvement,
            "step_size": step_size,
        }
        return unravel(new_flat), opt, metrics


register_algo(
    "hatrpo", HATRPOConfig, HATRPO,
    "HATRPO: sequential per-agent KL-constrained natural-gradient steps with the factor M (Kuba et al. 2022, eq. 8)",
)
