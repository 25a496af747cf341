"""MAMT: mirror-descent actors with learned per-agent trust regions (Li et al. 2022, Algorithm 1).

MAMT (Li, Wang, Jin, Sheng & Zha 2022, "Dealing with Non-Stationarity in MARL via Trust-Region
Decomposition") is MAMD (:mod:`trustmarl.algos.off_policy.mamd`) with one trust-region size ``delta_i``
per agent, the divisor of agent ``i``'s mirror-descent penalty, learned so that the non-stationarity
each agent feels stays small. One gradient iteration, in the authors' code order (the pieces are in
:mod:`trustmarl.trust.radii` and :mod:`trustmarl.trust.tsallis`):

1. MAAC's critic step; 2. ``a~ ~ pi``, ``log pi``, ``log pi^old`` (``kl_delta``); 3. the lagged old policy's
   refresh every ``old_policy_lag`` iterations; 4. ``Q_i``, ``b_i``, ``A_i`` and the actor loss
   ``E[log pi_i(a~_i) sg((ln_q pi_i - ln_q pi_i^old) / delta_i - A_i)]`` (eq. 10 with the agent's own ``delta_i``);
5. coordination coefficients ``C = softmax_i |Q_i - b_j|`` (eq. 7); 6. ``KL^ = TRDNet((o, a~), delta, C)``
   (eq. 8); 7. the tightest teammate ``j*(i) = argmax_j sum_b C[b, i, j]`` and the measured
   non-stationarity ``D_ns,i = KL(pi_j* || m_i(.|o_i, j*)) / |A_j*|`` (eq. 5), with ``m_i`` agent ``i``'s
   model of its teammates' policies, trained by cross-entropy on their replayed actions (Table 1);
8. the fast step on ``L_ns = mean (KL^ - sg(D_ns))^2`` (TRD-Net, clip 10 n); 9. the actors' step;
10. every ``slow_every`` iterations the slow step on the radii,
   ``L_delta = sum_i sg(D_q,i) / delta_i + mean KL^`` (``delta_loss=penalty``, ``D_q,i`` the batch mean of the
   penalty) or ``mean KL^`` alone (``delta_loss=reference``: in the authors' code the actor term carries no
   gradient to ``delta``), with ``KL^`` recomputed after the fast step (the authors' in-place update
   cannot be reproduced: PyTorch now refuses it), clip 0.5, then ``delta_i <- clip(delta_i, tr_min, tr_max)``;
11. Polyak targets.

``--preset reference`` runs the authors' released code's settings: ``q = 1``, ``delta_loss=reference``, the
modelling policies frozen at their initialisation (never stepped), ``cc_threshold = 0.05``.
"""

from __future__ import annotations

import dataclasses
import typing

import flax.linen as nn
import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.agents import opt_init, opt_step
from trustmarl.algos.base import block_mean, block_sum
from trustmarl.algos.off_policy.mamd import MAMD, MAMDConfig
from trustmarl.networks import MLP, Dense
from trustmarl.trust import radii
from trustmarl.validation import ConfigError, in_range, positive, positive_int

DELTA_LOSSES = ("penalty", "reference")


@dataclasses.dataclass
class MAMTConfig(MAMDConfig):
    """MAMT hyperparameters (Li et al. 2022, Table 1; the authors' code where the table is silent)."""

    name: str = "mamt"
    tr_min: float = radii.TR_MIN  # the trust-region clip [0.01, 100]
    tr_max: float = radii.TR_MAX  # upper clip of delta_i
    tr_init: float = 0.01  # initial delta_i (the authors' code)
    cc_threshold: float = 0.2  # "delta in coordination coefficient": edge threshold on C (code: 0.05)
    delta_loss: str = "penalty"  # penalty: sum_i sg(D_q,i)/delta_i + mean KL^ | reference: mean KL^ (code)
    delta_lr: float = 1e-3  # Adam learning rate of the slow (delta) step
    slow_every: int = 1  # gradient iterations between two slow (delta) steps
    trd_hidden: int = 128  # hidden width of TRD-Net's GCN and MLP layers
    trd_lr: float = 1e-3  # Adam learning rate of TRD-Net (the fast step)
    self_loop_weight: float = 0.0  # 0: the code's zero-weight self-loops in TRD-Net's GCN
    monotone_tr_layers: bool = False  # TRD-Net's monotone (exp-weight) layers, commented out in the code
    train_modeling_policy: bool = True  # false: modelling policies frozen at initialisation (the code)
    model_lr: float = 1e-3  # Adam learning rate of the teammate-modelling policies
    model_max_grad_norm: float = 0.5  # gradient-norm clip of the modelling policies' step
    l2: float = 1e-3  # PyTorch-style weight decay on TRD-Net and delta (the code's Adam weight_decay)

    UNUSED: typing.ClassVar[dict[str, str]] = {
        **MAMDConfig.UNUSED,
        "md_coef": "MAMT learns each agent's trust region delta_i (algo.tr_init, tr_min, tr_max)",
        "constrained": "MAMT gives every agent a learned trust region",
    }
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {**MAMDConfig.CHOICES, "delta_loss": DELTA_LOSSES}

    def validate(self) -> None:
        super().validate()
        positive(self, "tr_min", "tr_max", "delta_lr", "trd_lr", "model_lr", "model_max_grad_norm")
        positive_int(self, "slow_every", "trd_hidden")
        in_range(self, "cc_threshold", 0.0, 1.0)
        if self.tr_min > self.tr_max:
            raise ConfigError(f"algo.tr_min={self.tr_min!r} must be <= algo.tr_max={self.tr_max!r}")
        if not self.tr_min <= self.tr_init <= self.tr_max:
            raise ConfigError(f"algo.tr_init={self.tr_init!r} must lie in [algo.tr_min, algo.tr_max] = [{self.tr_min}, {self.tr_max}]")
        if self.l2 < 0:
            raise ConfigError(f"algo.l2={self.l2!r} must be >= 0")

    def check_env(self, env) -> None:
        super().check_env(env)
        if env.n_agents < 2:
            raise ConfigError(f"mamt needs at least 2 agents (it models teammates); the env has {env.n_agents}")


class TeammateModel(nn.Module):
    """``m_i(. | o_i, j)``: agent ``i``'s model of teammate ``j``'s policy (Li et al. 2022, Table 1's
    modelling policy): an MLP on ``[o_i, onehot(j)]`` and one logits head per teammate group, sized by
    that group's action count."""

    head_sizes: typing.Sequence[int]
    hidden_sizes: typing.Sequence[int]
    activation: str = "leaky_relu"

    @nn.compact
    def __call__(self, x):
        h = MLP(self.hidden_sizes, self.activation)(x)
        return tuple(Dense(a, name=f"head_{g}")(h) for g, a in enumerate(self.head_sizes))


class MAMT(MAMD):
    # run key env_blocks: MAAC's reductions, plus the gradients of the teammate models, TRD-Net and the radii all-reduced,
    # the tightest teammate's coefficient sums and the penalty's batch mean D_q summed over all blocks
    ENV_BLOCKS = True
    LAST_STEP_METRICS = frozenset({"diag/tightest_teammate_per_agent"})

    def __init__(self, env, cfg: MAMTConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.trd = radii.TRDNet(group_sizes=tuple(g.n for g in self.groups), hidden=cfg.trd_hidden,
                                cc_threshold=cfg.cc_threshold, self_loop_weight=cfg.self_loop_weight,
                                monotone=cfg.monotone_tr_layers)
        n_actions = tuple(g.action_space.n for g in self.groups)
        self.models = tuple(TeammateModel(n_actions, tuple(cfg.hidden_sizes), cfg.activation) for _ in self.groups)
        self.trd_tx = self.make_tx(cfg.trd_lr, cfg.critic_max_grad_norm * self.n_agents, l2=cfg.l2)
        self.delta_tx = self.make_tx(cfg.delta_lr, 0.5, l2=cfg.l2)
        self.model_tx = self.make_tx(cfg.model_lr, cfg.model_max_grad_norm)
        self.agent_group = jnp.asarray(self.agents.agent_group)  # [N] group of each agent

    # ---- state ---------------------------------------------------------------------------------
    def init_extra(self, key, actor_params, critic_params) -> dict:
        ag, n = self.agents, self.n_agents
        k_trd, k_model = jax.random.split(key)
        obs = tuple(jnp.zeros((1, g.n, g.obs_dim)) for g in self.groups)
        act = tuple(jnp.zeros((1, g.n, g.action_space.n)) for g in self.groups)
        trd = self.trd.init(k_trd, obs, act, jnp.full((n,), self.cfg.tr_init), jnp.zeros((1, n, n)))
        model = tuple(ag.init(m, jax.random.fold_in(k_model, g), g, jnp.zeros((self.groups[g].n, ag.input_dim(g) + n)))
                      for g, m in enumerate(self.models))
        delta = jnp.full((n,), self.cfg.tr_init)
        return {
            **super().init_extra(key, actor_params, critic_params),
            "delta": delta, "delta_opt": self.delta_tx.init(delta),
            "trd": trd, "trd_opt": self.trd_tx.init(trd),
            "model": model, "model_opt": tuple(opt_init(self.model_tx, p, ag.stacked(g)) for g, p in enumerate(model)),
        }

    def radii(self, state) -> jax.Array:
        """Each agent's own learned trust region ``delta_i`` (Li et al. 2022, eq. 10)."""
        return state.extra["delta"]

    # ---- the teammate models ---------------------------------------------------------------------
    def model_log_probs(self, model_params, obs: tuple, avail: tuple) -> tuple[jax.Array, jax.Array]:
        """``log m_i(. | o_i, j)`` for every observer ``i`` and teammate ``j``, ``[B, N_i, N_j, A_max]`` (masked by the
        teammate's available actions, padded to the widest action set with ``-inf``), and the mean square of
        the raw logits (the output regulariser)."""
        ag, n = self.agents, self.n_agents
        out, sq = [], []
        for g in range(len(self.groups)):
            o = ag.with_id(g, obs[g])  # [B, n_g, d]
            b, n_g, d = o.shape
            x = jnp.concatenate([jnp.broadcast_to(o[:, None], (b, n, n_g, d)),
                                 jnp.broadcast_to(jnp.eye(n)[None, :, None, :], (b, n, n_g, n))], -1)  # [B, N_j, n_g, d+N]
            heads = ag.apply(self.models[g], model_params[g], g, x)  # per teammate group h: [B, N_j, n_g, A_h]
            logps = []
            for h, (grp, start, av) in enumerate(zip(self.groups, self.agents.offsets, avail)):
                raw = jnp.swapaxes(heads[h][:, start:start + grp.n], 1, 2)  # [B, n_g(i), n_h(j), A_h]
                sq.append(jnp.mean(jnp.square(raw)))
                logps.append(jax.nn.log_softmax(self.masked_logits(raw, av[:, None]), -1))  # teammate j's own head
            out.append(radii.pad_log_probs(logps)[0])  # [B, n_g, N_j, A_max]
        return jnp.concatenate(out, axis=1), jnp.mean(jnp.stack(sq))

    def after_actors(self, state, batch, terms, pre_actor, key):
        state, metrics = super().after_actors(state, batch, terms, pre_actor, key)  # the old policy's refresh
        return self.trust_region_steps(state, batch, terms, metrics)

    def trust_region_steps(self, state, batch, terms, metrics: dict):
        """Steps 5-10 of the module docstring on the iteration's policy terms (before the actors' step)."""
        cfg, n = self.cfg, self.n_agents
        coef = jax.lax.stop_gradient(radii.coordination_coefficients(terms.q, terms.baseline))  # [B, N, N], eq. 7
        act = tuple(jax.nn.one_hot(a, g.action_space.n) for a, g in zip(terms.actions, self.groups))
        jstar = radii.tightest_teammate(block_sum(coef.sum(0))[None])  # [N]; env blocks: the sums over all blocks' samples
        extra, d_ns, model_loss_i = self.model_step(state.extra, batch, terms, jstar)
        extra, l_ns, kl_hat = self.fast_step(extra, batch, act, coef, d_ns)
        d_q = jax.lax.stop_gradient(block_mean(self.penalty_terms(terms).mean(0)))  # [N] batch mean of the penalty (all blocks)
        slow = (state.grad_steps + 1) % cfg.slow_every == 0
        extra, l_delta = self.slow_step(extra, batch, act, coef, d_q, slow)

        off = ~jnp.eye(n, dtype=bool)
        c_own = jnp.where(off, coef, jnp.nan)  # agent i's coefficients towards its teammates C[b, i, j != i]
        metrics.update({
            "loss/trd": l_ns, "loss/delta": l_delta, "loss/modeling": model_loss_i.mean(),
            "diag/delta_per_agent": extra["delta"], "diag/kl_hat_per_agent": kl_hat.mean(0), "diag/d_ns_per_agent": d_ns.mean(0),
            "diag/tightest_teammate_per_agent": jstar.astype(jnp.float32), "diag/penalty_per_agent": d_q,
            "diag/coordination_mean_per_agent": jnp.nanmean(c_own, axis=(0, 2)),
            "diag/coordination_var_per_agent": jnp.nanvar(c_own, axis=(0, 2)),
            "diag/modeling_loss_per_agent": model_loss_i,
        })
        return state._replace(extra=extra), metrics

    def model_step(self, extra: dict, batch: dict, terms, jstar: jax.Array):
        """Step 7: ``D_ns,i = KL(pi_j* || m_i(.|o_i, j*)) / |A_j*|`` (eq. 5) on the teammates' current policies and
        the models before their step, then (``train_modeling_policy``) one cross-entropy step of the models on the
        teammates' replayed actions (Table 1). Returns ``(extra, D_ns [B, N], per-agent model loss [N])``."""
        cfg, ag, n = self.cfg, self.agents, self.n_agents
        logp_pi, valid = radii.pad_log_probs(terms.logp)  # [B, N, A_max], [N, A_max]

        def model_loss(model_params):  # Table 1: cross-entropy on the teammates' replayed actions
            lm, sq = self.model_log_probs(model_params, batch["obs"], batch["avail"])
            taken = jnp.concatenate(batch["actions"], -1)  # [B, N]
            idx = jnp.broadcast_to(taken[:, None, :, None], lm.shape[:3] + (1,))
            ce = -jnp.take_along_axis(lm, idx, -1)[..., 0]  # [B, N_i, N_j]
            loss_i = jnp.sum(jnp.where(~jnp.eye(n, dtype=bool), ce, 0.0).mean(0), -1)
            return loss_i.sum() + cfg.policy_reg * sq, (loss_i, lm)

        model_grads, (model_loss_i, lm) = jax.grad(model_loss, has_aux=True)(extra["model"])
        model_grads = block_mean(model_grads)  # env blocks: the gradient of the union of the blocks' batches
        lm_star = jnp.take_along_axis(lm, jnp.broadcast_to(jstar[None, :, None, None], lm.shape[:2] + (1, lm.shape[-1])), 2)[:, :, 0]
        d_ns = radii.nonstationarity(logp_pi[:, jstar], jax.lax.stop_gradient(lm_star), valid[jstar])  # [B, N]
        if cfg.train_modeling_policy:
            pairs = [opt_step(self.model_tx, p, g, o, ag.stacked(k))
                     for k, (p, g, o) in enumerate(zip(extra["model"], model_grads, extra["model_opt"]))]
            extra = {**extra, "model": tuple(p for p, _ in pairs), "model_opt": tuple(o for _, o in pairs)}
        return extra, d_ns, model_loss_i

    def fast_step(self, extra: dict, batch: dict, act: tuple, coef: jax.Array, d_ns: jax.Array):
        """Step 8, the fast step: TRD-Net regresses ``KL^`` onto the measured non-stationarity (eq. 8),
        ``L_ns = mean (KL^ - sg(D_ns))^2``. Returns ``(extra, L_ns, KL^ [B, N] before the step)``."""
        def ns_loss(trd_params):
            kl_hat = self.trd.apply(trd_params, batch["obs"], act, extra["delta"], coef)
            return jnp.mean(jnp.square(kl_hat - d_ns)), kl_hat

        (l_ns, kl_hat), trd_grads = jax.value_and_grad(ns_loss, has_aux=True)(extra["trd"])
        trd_grads = block_mean(trd_grads)  # env blocks: as the models' gradient
        trd, trd_opt = opt_step(self.trd_tx, extra["trd"], trd_grads, extra["trd_opt"], False)
        return {**extra, "trd": trd, "trd_opt": trd_opt}, l_ns, kl_hat

    def slow_step(self, extra: dict, batch: dict, act: tuple, coef: jax.Array, d_q: jax.Array, slow):
        """Step 10, the slow step on the radii (when ``slow``), with ``KL^`` recomputed after the fast step:
        ``L_delta = sum_i sg(D_q,i) / delta_i + mean KL^`` (``delta_loss=penalty``) or ``mean KL^``, then the clip.
        Returns ``(extra, L_delta)``."""
        cfg = self.cfg

        def delta_loss(delta):
            kl = self.trd.apply(extra["trd"], batch["obs"], act, delta, coef).mean()
            return (kl + jnp.sum(d_q / delta)) if cfg.delta_loss == "penalty" else kl

        l_delta, delta_grads = jax.value_and_grad(delta_loss)(extra["delta"])
        delta_grads = block_mean(delta_grads)  # env blocks: as the models' gradient
        upd, delta_opt = self.delta_tx.update(delta_grads, extra["delta_opt"], extra["delta"])
        delta = radii.clamp_radii(extra["delta"] + upd, cfg.tr_min, cfg.tr_max)
        delta = jnp.where(slow, delta, extra["delta"])
        delta_opt = jax.tree.map(lambda new, old: jnp.where(slow, new, old), delta_opt, extra["delta_opt"])
        return {**extra, "delta": delta, "delta_opt": delta_opt}, l_delta


register_algo(
    "mamt", MAMTConfig, MAMT,
    "MAMT: MAMD with per-agent trust regions learned from a graph network over coordination coefficients (Li et al. 2022, Alg. 1)",
    family="off-policy", action_kinds=("discrete",),
)
