"""MATRL: multi-agent trust region learning on PPO (Wen et al. 2021, Algorithm 2).

One iteration on the batch of the current joint policy ``pi`` (per-agent rewards and critics):

1. **Trust payoff region (TPR)**, Wen et al. 2021 eq. 2: every agent takes an independent PPO step
   from a copy of its current actor and critic, ``tpr_iters`` full-batch Adam steps on
   ``pi_coef L_clip + vf_coef L_V + kl_coef KL - ent_coef H``, stopping early (per agent) once the
   sample KL to the behaviour policy exceeds ``1.5 target_kl``. Result: candidates ``pi_hat``.
2. **Meta-game**, eq. 3 and eq. 5: ``G_k[x] = mean_t prod_{j: x_j = 1} clip(pi_hat_j/pi_j, 1 +- meta_clip) A_k``
   with advantages divided by their std but not mean-centred (:func:`trustmarl.trust.metagame_payoffs`).
3. **Nash**, section 3.2: ``rho = NashSolver(G)`` (:func:`trustmarl.trust.solve_metagame`; fallback
   ``rho = 1``); ``rho_i`` is agent i's probability of keeping its current policy.
4. **Trust stable region**, section 3.2: ``pi_bar_i = rho_i pi_i + (1 - rho_i) pi_hat_i``. The next
   iterate starts from the interpolated parameters ``rho_i theta_i + (1 - rho_i) theta_hat_i`` (actor and
   critic, as the reference code); importance weights use the exact distribution mixture.
5. **Best response**, eq. 6: ``br_iters`` Adam steps (``br_lr``) from the mixture on the PPO loss whose
   clipped surrogate is weighted per sample by ``W_{-i,t} = prod_{j != i} clip(pi_bar_j/pi_j, 1 +- br_clip)``.

Ablations (flags): ``best_response=false`` ("MATRL w/o BR": the next policy is the mixture),
``rho=0`` (IL-PP: best response to the candidates), ``rho=1`` (best response to the current policies:
an independent step), ``independent=true`` (plain independent PPO: the next policy is the candidate).

Differences from the reference code (``matrl-project/matrl``), as documented in docs/matrl.md: the
meta-game is the mean of the products (not the product of means, on mean-zero advantages), candidates
restart from the current networks every iteration, entropy is a bonus in every loss and is the exact
per-state entropy (the code's sample estimate ``mean(-log pi(a_t))`` has the gradient of the
cross-entropy to the behaviour policy, not of the entropy), mixing is per agent, and the best-response
weight is per sample with the mixture's ratio (the code: one scalar from ``pi_hat``).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import NamedTuple

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.agents import opt_init, opt_step
from trustmarl.algos.on_policy.common import ActorCritic, Batch, TrainState
from trustmarl.algos.on_policy.config import OnPolicyConfig
from trustmarl.algos.on_policy.diagnostics import per_agent_kl_tv, trust_region_diagnostics
from trustmarl.trust.bounds import remark1_penalty, theorem1_penalty
from trustmarl.trust.gae import gae
from trustmarl.trust.metagame import expected_payoffs, metagame_payoffs, mixture_ratio, nash_conv
from trustmarl.trust.nash import SELECTIONS, pure_profiles, solve_metagame
from trustmarl.trust.normalize import value_norm_normalize, value_norm_update
from trustmarl.trust.ratios import ppo_clip_objective
from trustmarl.validation import ConfigError, non_negative, positive, positive_int


ENTROPY_TERMS = ("exact", "sample", "sample_flipped", "reference")


@dataclasses.dataclass
class MATRLConfig(OnPolicyConfig):
    """MATRL hyperparameters. Defaults: Wen et al. 2021, Table 3 (grid worlds), and the reference code
    where the paper is silent (GAE lambda, value clip, target KL); see docs/matrl.md for the table."""

    name: str = "matrl"
    # rollout: 2000 env steps per iteration (Table 3 batch size), one 100-step Checkers episode per env
    num_envs: int = 20
    rollout_len: int = 100
    # optimisation: Table 3 (policy lr 0.002; the code trains the critic with the same optimiser)
    actor_lr: float = 2e-3
    critic_lr: float = 2e-3
    epochs: int = 1  # unused (tpr_iters, br_iters): full-batch steps
    minibatches: int = 1  # unused
    # returns: gamma Table 3, lambda reference code; value targets are rewards-to-go (reference code)
    gamma: float = 0.99
    gae_lambda: float = 0.97
    reward: str = "agent"  # each agent learns from its own reward (general-sum), as the paper
    critic: str = "local"  # one critic per agent on its own observation
    value_norm: bool = False
    normalize_advantages: bool = True  # per agent, for the PPO losses only (never for the meta-game)
    # losses: Table 3 (clip 0.1, entropy 0.05, KL 0.001, value coefficient 1.0 for Checkers)
    clip_eps: float = 0.1
    ent_coef: float = 0.05
    vf_coef: float = 1.0
    pi_coef: float = 1.0  # policy-loss coefficient (reference code 1.0; MuJoCo Table 5: 100)
    kl_coef: float = 1e-3  # coefficient of the sample KL(pi_old || pi) penalty
    vf_clip: float | None = 0.1  # PPO2-style value clipping around the behaviour critic (reference code); None = off
    # networks: Table 3 / section E (2 x 128, Leaky ReLU), one network per agent
    share_params: bool = False
    agent_id: bool = False
    hidden_sizes: tuple[int, ...] = (128, 128)
    activation: str = "leaky_relu"
    # 1. TPR step
    tpr_iters: int = 10  # Table 3 "policy update iterations" (reference code: 5)
    target_kl: float | None = 0.1  # early stop once KL > 1.5 target_kl (reference code); None = never
    # 2-3. meta-game and Nash
    meta_clip: float | None = 0.1  # App. E: clipping the meta-game importance ratios is "vital"; None = off
    selection: str = "random"  # equilibrium selection (section 3.2: random), see trustmarl.trust.nash
    nash_tol: float = 1e-5  # tolerance of the meta-game Nash solver
    nash_starts: int = 32  # random starts of the Nash solver
    nash_iters: int = 50  # iterations per start of the Nash solver
    rho: float | None = None  # force the meta-strategy: 0 = IL-PP, 1 = keep the current policies; None = Nash
    # 5. best response (Table 3: lr 0.002, 5 iterations, importance-weight clip 0.1)
    best_response: bool = True  # false: "MATRL w/o BR" (the next policy is the mixture)
    br_iters: int = 5  # full-batch steps of the best response
    br_lr: float = 2e-3  # step size of the best response
    br_clip: float = 0.1  # importance-weight clip of the best response
    # plain independent PPO (the paper's IL baseline): the next policy is the TPR candidate
    independent: bool = False  # plain independent PPO (the paper's IL baseline): the next policy is the TPR candidate
    # the reference code's defects, off by default (``--preset reference`` turns them on; docs/matrl.md)
    entropy_term: str = "exact"  # exact: per-state entropy | sample: mean(-log pi(a_t)) | sample_flipped: minus that | reference: the code's per loss
    head_activation: str = "none"  # apply algo.activation to the outputs too (the reference code's mlp): none | policy | value | both

    _STEPS = "MATRL takes full-batch steps: algo.tpr_iters (candidate) and algo.br_iters (best response)"
    UNUSED: typing.ClassVar[dict[str, str]] = {
        "epochs": _STEPS,
        "minibatches": _STEPS,
        "clip_rule": "every agent is clipped at algo.clip_eps (independent PPO steps)",
        "agent_reduction": "each agent minimises its own loss",
        "recurrent": "MATRL supports feed-forward actors only",
        "gru_size": "MATRL supports feed-forward actors only",
        "seq_len": "MATRL supports feed-forward actors only",
        "critic_time": "MATRL's critics read the observation only (no time-aware critic); use algo.bootstrap_truncation",
    }
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        **OnPolicyConfig.CHOICES,
        "activation": ("tanh", "relu", "gelu", "leaky_relu", "leaky_relu_0.2"),
        "head_activation": ("none", "policy", "value", "both"),
        "critic": ("local",),
        "selection": SELECTIONS,
        "entropy_term": ENTROPY_TERMS,
    }

    def validate(self) -> None:
        super().validate()
        positive_int(self, "tpr_iters", "br_iters", "nash_starts", "nash_iters")
        positive(self, "br_lr", "br_clip")
        non_negative(self, "pi_coef", "kl_coef", "nash_tol")
        for key in ("target_kl", "vf_clip", "meta_clip"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ConfigError(f"algo.{key}={v!r} must be > 0, or null to switch it off")
        if self.rho is not None and not 0.0 <= self.rho <= 1.0:
            raise ConfigError(f"algo.rho={self.rho!r} must be in [0, 1], or null to solve the meta-game")
        if self.share_params:
            raise ConfigError("algo.share_params=true is not allowed for matrl: every agent mixes its own network with rho_i")
        if self.independent and self.rho is not None:
            raise ConfigError("algo.rho has no effect with algo.independent=true (no meta-game); leave it null")


class StepData(NamedTuple):
    """What the TPR and best-response losses read besides the batch."""

    adv: jax.Array  # [B, N] advantages for the PPO surrogate (normalised per agent)
    weight: jax.Array  # [B, N] per-sample weight of the surrogate (1 in the TPR step, W_{-i} in the BR)
    v_old: jax.Array  # [B, N] behaviour critic's values in the critic's units (value clipping)
    entropy_sign: float = 1.0  # +1: the entropy term is a bonus; -1: a penalty (the reference code's candidate loss)


def per_agent_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """``[B, N] -> [N]``: masked mean over samples, per agent."""
    return jnp.sum(x * mask, axis=0) / jnp.maximum(jnp.sum(mask, axis=0), 1.0)


def best_response_weights(ratio_candidate: jax.Array, rho: jax.Array, clip: float) -> jax.Array:
    """``W[t, i] = prod_{j != i} clip(pi_bar_j/pi_j, 1 +- clip)`` (Wen et al. 2021, eq. 6 with section 3.2's
    truncated importance weights), ``pi_bar_j/pi_j = rho_j + (1 - rho_j) pi_hat_j/pi_j`` exactly."""
    c = jnp.clip(mixture_ratio(ratio_candidate, rho), 1.0 - clip, 1.0 + clip)  # [B, N]
    n = c.shape[-1]
    others = jnp.where(jnp.eye(n, dtype=bool), 1.0, c[..., None, :])  # [B, i, j]: 1 on j = i
    return jnp.prod(others, axis=-1)


class MATRL(ActorCritic):
    """PPO-based MATRL for n agents; see the module docstring."""

    def __init__(self, env, cfg: MATRLConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.name = cfg.name
        self.br_actor_tx = self.make_tx(cfg.br_lr, cfg.br_iters)
        self.br_critic_tx = self.make_tx(cfg.br_lr, cfg.br_iters)
        self.offsets = self.agents.offsets
        if cfg.head_activation in ("policy", "both"):  # the reference code's mlp: the hidden activation on the output too
            self.actors = tuple(a.clone(output_activation=cfg.activation) for a in self.actors)
        if cfg.head_activation in ("value", "both"):
            self.critic = self.critic.clone(output_activation=cfg.activation)

    def actor_steps_per_update(self, g: int) -> int:
        return self.cfg.tpr_iters

    def critic_steps_per_update(self) -> int:
        return self.cfg.tpr_iters

    # ---- state -------------------------------------------------------------------------------
    def init_extra(self, key, actor_params, critic_params) -> dict:
        """The best-response optimisers and the count of updates whose meta-game had no equilibrium found."""
        return {
            "br_actor_opt": tuple(opt_init(self.br_actor_tx, p, True) for p in actor_params),
            "br_critic_opt": tuple(opt_init(self.br_critic_tx, p, True) for p in critic_params),
            "nash_fallbacks": jnp.zeros((), jnp.int32),
        }

    # ---- targets -------------------------------------------------------------------------------
    def targets(self, state, traj: dict, last_value: jax.Array):
        """Raw GAE(gamma, lambda) advantages (normalised later, per use) and rewards-to-go as value
        targets (Wen et al. 2021, Algorithm 2 line 8; reference code: discounted rewards-to-go)."""
        cfg = self.cfg
        done = jnp.broadcast_to(traj["done"][..., None], traj["value"].shape).astype(jnp.float32)
        adv, _ = gae(traj["reward"], traj["value"], done, last_value, cfg.gamma, cfg.gae_lambda)
        _, rtg = gae(traj["reward"], traj["value"], done, last_value, cfg.gamma, 1.0)  # lambda = 1: rewards-to-go
        vn = state.value_norm
        target = rtg
        if cfg.value_norm:
            vn = value_norm_update(vn, rtg)
            target = value_norm_normalize(vn, rtg)
        return state._replace(value_norm=vn), adv, target, rtg

    # ---- losses and steps ----------------------------------------------------------------------
    def losses(self, params, batch: Batch, data: StepData):
        """Sum over agents of each agent's PPO loss (agent i's gradient reaches only its own networks)
        and the per-agent terms ``[N]`` (at ``params``, before the step)."""
        cfg = self.cfg
        actor_params, critic_params = params
        mask = batch.active
        dists = self.policy(actor_params, batch.obs, batch.avail)
        logp = self.log_prob(dists, batch.actions)  # [B, N]
        ratio = jnp.exp(logp - batch.logp)
        # Schulman et al. 2017 eq. 7 (PPO clip); times W_{-i,t} in the best response (Wen et al. 2021 eq. 6)
        pi_loss = -per_agent_mean(data.weight * ppo_clip_objective(ratio, data.adv, cfg.clip_eps), mask)
        # sample KL(pi_old || pi): its expectation under pi_old is the KL (reference code's kl term and early stop)
        kl = per_agent_mean(batch.logp - logp, mask)
        if cfg.entropy_term == "exact":
            ent = per_agent_mean(self.entropy(dists), mask)  # exact entropy per state (the entropy bonus of the authors' code)
        else:  # the reference code's sample estimate: its gradient is the cross-entropy's to the behaviour policy
            ent = per_agent_mean(-logp, mask)
        v = self.value(critic_params, batch.obs, batch.state)
        err = jnp.square(v - batch.target)
        if cfg.vf_clip is not None:  # PPO2 value clipping around the behaviour critic (reference code)
            v_clipped = data.v_old + jnp.clip(v - data.v_old, -cfg.vf_clip, cfg.vf_clip)
            err = jnp.maximum(err, jnp.square(v_clipped - batch.target))
        v_loss = per_agent_mean(err, mask)
        # Wen et al. 2021, Algorithm 2 lines 6-8 / reference code loss: c_pi L_clip + c_v L_V + c_kl KL - c_ent H
        total = cfg.pi_coef * pi_loss + cfg.vf_coef * v_loss + cfg.kl_coef * kl - data.entropy_sign * cfg.ent_coef * ent
        return jnp.sum(total), {"policy": pi_loss, "value": v_loss, "entropy": ent, "kl": kl}

    def _per_agent_select(self, flags: jax.Array, if_true, if_false):
        """Per group, ``if_true`` where the agent's flag is set, else ``if_false`` (stacked leaves ``[n_g, ...]``)."""
        out = []
        for g, grp in enumerate(self.groups):
            f = flags[self.offsets[g]: self.offsets[g] + grp.n]
            out.append(jax.tree.map(lambda a, b: jnp.where(f.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), if_true[g], if_false[g]))
        return tuple(out)

    def ppo_steps(self, params, opts, txs, batch: Batch, data: StepData, iters: int, kl_stop: float | None):
        """``iters`` full-batch Adam steps of every agent on :meth:`losses`; an agent whose sample KL exceeds
        ``kl_stop`` before a step stops there (its networks and optimiser state stay as they are).

        ``params = (actor_params, critic_params)``, ``opts`` alike, ``txs = (actor_tx, critic_tx)``.
        Returns ``(params, opts, aux)`` with ``aux`` the per-agent terms ``[iters, N]`` and ``steps`` ``[N]``.
        """
        actor_tx, critic_tx = txs
        grad_fn = jax.grad(self.losses, has_aux=True)

        def step(carry, _):
            (actor, critic), (a_opt, c_opt), stopped = carry
            grads, aux = grad_fn((actor, critic), batch, data)
            if kl_stop is not None:  # reference code (Spinning Up PPO): stop once KL > 1.5 target_kl
                stopped = stopped | (aux["kl"] > kl_stop)
            pairs_a = [opt_step(actor_tx, p, gr, o, True) for p, gr, o in zip(actor, grads[0], a_opt)]
            pairs_c = [opt_step(critic_tx, p, gr, o, True) for p, gr, o in zip(critic, grads[1], c_opt)]
            new = ((tuple(p for p, _ in pairs_a), tuple(p for p, _ in pairs_c)),
                   (tuple(o for _, o in pairs_a), tuple(o for _, o in pairs_c)))
            old = ((actor, critic), (a_opt, c_opt))
            keep = lambda o, n: self._per_agent_select(stopped, o, n)  # noqa: E731
            params = (keep(old[0][0], new[0][0]), keep(old[0][1], new[0][1]))
            opts = (keep(old[1][0], new[1][0]), keep(old[1][1], new[1][1]))
            aux["moved"] = (~stopped).astype(jnp.float32)
            return (params, opts, stopped), aux

        init = (params, opts, jnp.zeros((self.n_agents,), bool))
        (params, opts, _), aux = jax.lax.scan(step, init, None, length=iters, unroll=bool(self.cfg.sgd_unroll))
        aux["steps"] = aux.pop("moved").sum(0)
        return params, opts, aux

    def mix(self, rho: jax.Array, current: tuple, candidate: tuple) -> tuple:
        """Per group, ``rho_i theta_i + (1 - rho_i) theta_hat_i`` (Wen et al. 2021 section 3.2; parameter
        interpolation of the reference code, per agent)."""
        out = []
        for g, grp in enumerate(self.groups):
            r = rho[self.offsets[g]: self.offsets[g] + grp.n]
            shape = lambda a: r.reshape((-1,) + (1,) * (a.ndim - 1))  # noqa: E731
            out.append(jax.tree.map(lambda a, b: shape(a) * a + (1.0 - shape(a)) * b, current[g], candidate[g]))
        return tuple(out)

    # ---- one iteration ---------------------------------------------------------------------------
    def step_data(self, state, batch: Batch) -> tuple[StepData, jax.Array, jax.Array]:
        """``(data, meta_adv, adv_std)``: per-agent PPO advantages (normalised when configured), the
        meta-game's advantages (divided by the std, NOT mean-centred: the
        estimator of Wen et al. 2021, eq. 3) and the per-agent std."""
        mask = batch.active
        adv = batch.adv
        mean = per_agent_mean(adv, mask)
        std = jnp.sqrt(per_agent_mean(jnp.square(adv - mean), mask))
        scale = std + 1e-8
        ppo_adv = jnp.where(mask > 0, (adv - mean) / scale, 0.0) if self.cfg.normalize_advantages else adv
        meta_adv = jnp.where(mask > 0, adv / scale, 0.0)
        v_old = value_norm_normalize(state.value_norm, batch.value) if self.cfg.value_norm else batch.value
        return StepData(ppo_adv, jnp.ones_like(adv), v_old, self.entropy_sign(candidate=True)), meta_adv, std

    def entropy_sign(self, candidate: bool) -> float:
        """+1 (a bonus) or -1: the reference code subtracts its sample entropy in the IL and best-response losses
        but adds it in MATRL's candidate loss (``entropy_term=reference``; ``sample_flipped`` adds it everywhere)."""
        term = self.cfg.entropy_term
        flipped = term == "sample_flipped" or (term == "reference" and candidate and not self.cfg.independent)
        return -1.0 if flipped else 1.0

    def learn_batch(self, state: TrainState, batch: Batch):
        cfg = self.cfg
        key, k_nash = jax.random.split(state.key)
        data, meta_adv, adv_std = self.step_data(state, batch)
        mask = batch.active
        current = (state.actor_params, state.critic_params)

        # 1. TPR: independent PPO steps from copies of the current networks (Wen et al. 2021 eq. 2)
        kl_stop = None if cfg.target_kl is None else 1.5 * cfg.target_kl
        candidate, tpr_opts, tpr = self.ppo_steps(
            current, (state.actor_opt, state.critic_opt), (self.actor_txs[0], self.critic_tx), batch, data, cfg.tpr_iters, kl_stop
        )
        state = state._replace(actor_opt=tpr_opts[0], critic_opt=tpr_opts[1])
        metrics = {
            "loss/policy": tpr["policy"].mean(), "loss/value": tpr["value"].mean(), "loss/entropy": tpr["entropy"].mean(),
            "diag/tpr_steps_per_agent": tpr["steps"],
        }
        # the candidates against the behaviour policy: ratios, KL and TV per sample [B, N]
        cand_dists = self.policy(candidate[0], batch.obs, batch.avail)
        log_ratio = jnp.where(mask > 0, self.log_prob(cand_dists, batch.actions) - batch.logp, 0.0)
        kl_hat, tv_hat = per_agent_kl_tv(self.dists, batch.dist, cand_dists, batch.avail, log_ratio)
        alpha = jnp.max(jnp.where(mask > 0, tv_hat, 0.0), axis=0)  # max-over-batch TV: the estimate of alpha_j
        eps = jnp.max(jnp.abs(jnp.where(mask > 0, batch.adv, 0.0)), axis=0)  # max |A_i| over the batch: eps_i
        metrics.update({
            "diag/tpr_kl_per_agent": per_agent_mean(kl_hat, mask),
            "diag/candidate_tv_per_agent": per_agent_mean(tv_hat, mask),
            "diag/alpha_per_agent": alpha,
            # Wen et al. 2021 eq. 4 with estimated alpha and eps: a heuristic, not a guarantee
            "diag/theorem1_penalty_per_agent": theorem1_penalty(alpha, eps, cfg.gamma),
        })

        if cfg.independent:  # plain IL: the candidate is the next policy
            nxt, br_opts = candidate, (state.extra["br_actor_opt"], state.extra["br_critic_opt"])
        else:
            nxt, br_opts, meta_metrics, found = self.meta_step(
                state, batch, data, meta_adv, adv_std, current, candidate, jnp.exp(log_ratio), tv_hat, alpha, eps, k_nash
            )
            metrics.update(meta_metrics)
            fallbacks = state.extra["nash_fallbacks"] + (~found).astype(jnp.int32)
            state = state._replace(extra={**state.extra, "nash_fallbacks": fallbacks})
            metrics["diag/nash_fallbacks_total"] = fallbacks
        extra = {**state.extra, "br_actor_opt": br_opts[0], "br_critic_opt": br_opts[1]}
        state = state._replace(actor_params=nxt[0], critic_params=nxt[1], extra=extra, key=key)
        metrics.update(trust_region_diagnostics(self, nxt[0], batch))
        metrics.update(self.action_probabilities(nxt[0], batch))
        return state, metrics

    def action_probabilities(self, actor_params: tuple, batch: Batch) -> dict[str, jax.Array]:
        """``diag/action_prob_<a>_per_agent``: each agent's probability of action ``a`` under the next policy, averaged
        over the batch's states, when every agent has the same few (at most 4) discrete actions. On a matrix game
        (one state) this is the policy itself: what a zero-sum or general-sum run learns when its returns stay
        flat (matching pennies: both agents at 1/2)."""
        kinds = {(d.kind, getattr(d, "n", 0)) for d in self.dists}
        if len(kinds) != 1 or next(iter(kinds))[0] != "discrete" or not 1 < next(iter(kinds))[1] <= 4:
            return {}
        logp = jnp.concatenate([d[0] for d in self.policy(actor_params, batch.obs, batch.avail)], axis=-2)  # [B, N, A]
        weight = batch.active[..., None]
        probs = jnp.sum(jnp.exp(logp) * weight, axis=0) / jnp.maximum(jnp.sum(weight, axis=0), 1.0)  # [N, A]
        return {f"diag/action_prob_{a}_per_agent": probs[:, a] for a in range(probs.shape[-1])}

    def meta_step(self, state, batch, data, meta_adv, adv_std, current, candidate, ratio_hat, tv_hat, alpha, eps, key):
        """Steps 2-5: meta-game, Nash, mixture and best response; ``(next, br_opts, metrics, found)``."""
        cfg = self.cfg
        mask = batch.active
        n = self.n_agents
        # 2. meta-game payoffs, Wen et al. 2021 eq. 3 and eq. 5 (clipped IS estimator, G[0..0] = 0)
        payoffs = metagame_payoffs(ratio_hat, meta_adv, cfg.meta_clip, jnp.any(mask > 0, axis=-1))
        # 3. Nash of the n-agent two-strategy game (section 3.2); rho_i = P(keep pi_i)
        if cfg.rho is None:
            sol = solve_metagame(payoffs, key, cfg.selection, cfg.nash_tol, cfg.nash_starts, cfg.nash_iters)
            rho, conv, found, n_eq = sol.rho, sol.nash_conv, sol.found, sol.n_equilibria
        else:
            rho = jnp.full((n,), cfg.rho, payoffs.dtype)
            conv, found, n_eq = nash_conv(payoffs, rho), jnp.asarray(True), jnp.zeros((), jnp.int32)
        # 4. trust stable region: pi_bar = rho pi + (1 - rho) pi_hat (parameters interpolated per agent)
        mixed = (self.mix(rho, current[0], candidate[0]), self.mix(rho, current[1], candidate[1]))
        metrics = {
            "diag/rho_per_agent": rho,
            "diag/nash_conv": conv,
            "diag/nash_fallback": (~found).astype(jnp.float32),
            "diag/n_equilibria": n_eq.astype(jnp.float32),
            "diag/meta_value_per_agent": expected_payoffs(payoffs, rho),  # u_k(rho) = g_k(pi_bar), eq. 25
            # D_TV(pi, pi_bar) = (1 - rho) D_TV(pi, pi_hat) (section 3.2, eq. 31)
            "diag/mixture_tv_per_agent": (1.0 - rho) * per_agent_mean(tv_hat, mask),
            "diag/mixture_tv_max_per_agent": (1.0 - rho) * alpha,
            "diag/remark1_penalty_per_agent": remark1_penalty(alpha, rho, eps, cfg.gamma),  # eq. 31, heuristic
            "diag/adv_std_per_agent": adv_std,
        }
        for x in pure_profiles(n)[1:]:  # every joint choice but all-current (0 by definition)
            name = "".join(map(str, x))
            metrics[f"diag/meta_payoff_{name}_per_agent"] = payoffs[(slice(None),) + tuple(int(v) for v in x)]
        br_opts = (state.extra["br_actor_opt"], state.extra["br_critic_opt"])
        if not cfg.best_response:  # "MATRL w/o BR": the mixture is the next policy
            return mixed, br_opts, metrics, found
        # 5. best response to pi_bar_{-i} (eq. 6) from the mixture, with per-sample truncated weights
        weight = jnp.where(mask > 0, best_response_weights(ratio_hat, rho, cfg.br_clip), 0.0)
        nxt, br_opts, br = self.ppo_steps(
            mixed, br_opts, (self.br_actor_tx, self.br_critic_tx), batch,
            data._replace(weight=weight, entropy_sign=self.entropy_sign(candidate=False)), cfg.br_iters, None
        )
        metrics.update({
            "loss/br_policy": br["policy"].mean(), "loss/br_value": br["value"].mean(),
            "diag/br_weight_mean_per_agent": per_agent_mean(weight, mask),
            "diag/br_weight_min_per_agent": jnp.min(jnp.where(mask > 0, weight, jnp.inf), axis=0),
            "diag/br_weight_max_per_agent": jnp.max(jnp.where(mask > 0, weight, -jnp.inf), axis=0),
        })
        return nxt, br_opts, metrics, found


register_algo(
    "matrl", MATRLConfig, MATRL,
    "MATRL: independent PPO candidates, a meta-game Nash mixture and a best response (Wen et al. 2021, Alg. 2)",
)
