"""F2A2-SAC (Li et al. 2023, Prop. 6): MAAC made fully decentralised by per-agent critic copies and consensus.

Every agent holds its own copy of MAAC's attention critic (twin critics by default, ``n_critics``), trains
it on its own reward and reads its own output ``Q_i`` from it; the parts named by ``share`` are agreed by
consensus (:mod:`trustmarl.algos.f2a2`): ``critic`` the whole copy (heads diluted by the averaging),
``maac`` the modules MAAC's code shares (attention keys, selectors, values and the state-action encoders;
heads and state encoders stay the agent's own), ``attention`` the attention modules only (Li et al. 2023,
Table 1). The other agents' unexecuted actions come from their true policies (``moa=false``, the "w/o MOA"
ablation) or from each agent's teammate models (``moa=true``; ``moa_model`` simple or paper, see
:mod:`trustmarl.algos.teammate_models`). Per gradient step, with ``y_i`` MAAC's soft target on the agent's own reward
(the minimum over the twin target copies), ``a0`` the buffer actions, ``a^ ~ pi`` resampled actions and
the stop-gradient ratios ``rho_f = min(eps, pi_i(a0_i) / pi0_i(a0_i))``, ``rho_b = min(eps, pi0_i(a^_i) /
pi_i(a^_i))`` of the agent's own factor (``pi0``: the behaviour policy, whose log-probability vectors
the buffer stores):

- critic copy ``i`` (Prop. 6 in the reward convention): ``mean[-alpha1 rho_f Q1(o, a0) + alpha2 sum_j (Qj(o, a0) - y)^2]
  + mean[-alpha1 Q1(o, a^) + alpha2 rho_b sum_j (Qj(o, a^) - y)^2]`` (critic 2 has no alpha1 term), the two
  halves summed (``combine=sum``, as the paper) or averaged, plus MAAC's attention-logit penalty on the
  agent's own row and the consensus terms ``lambda_i + beta (w~_i - v_i)`` on the shared leaves;
- actor ``i``: ``mean[log pi_i(a^_i) sg(alpha1 f^ + alpha2 rho_b sum_j delta^_j^2)] + mean[rho_f log pi_i(a0_i)
  sg(alpha1 f0)]`` with MAAC's ``f = log pi_i / soft_reward_scale - (Q1 - b_i)`` and ``delta^_j = Qj(o, a^) - y``;
- w/o-JOINT (``joint=false``): MAAC's estimators, the critic's buffer half ``alpha2 sum_j (Qj(o, a0) - y)^2``
  and the actor's resampled half ``alpha1 f^``.

With ``joint=false``, ``consensus=mean``, ``n_critics=1``, ``share=maac`` and plain gradient steps
F2A2-SAC's parameters are MAAC's.

Recurrent actors (``recurrent=true``): MAAC's GRU actors and sequences; every policy term reads the unrolled
sequences (:meth:`MAAC.batch_policies`), the critic copies stay feed-forward on the flattened steps, and every mean
is over the valid (unpadded) steps (``batch["weight"]``). The paper's teammate models do not read sequences.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.algos import f2a2, register_algo
from trustmarl.algos.off_policy.maac import MAAC, SHARED_CRITIC_MODULES, MAACConfig, PolicyTerms
from trustmarl.algos.off_policy.sequences import batch_mean
from trustmarl.validation import ConfigError

SHARE = {"critic": None, "maac": SHARED_CRITIC_MODULES, "attention": ("key", "selector", "value")}


@dataclasses.dataclass
class F2A2SACConfig(MAACConfig, f2a2.OffPolicyFields):
    """F2A2-SAC: per-agent copies of MAAC's critic on own rewards, joint objective, consensus (Li et al. 2023)."""

    name: str = "f2a2_sac"
    share: str = "critic"  # critic (the whole copy) | maac (attention + state-action encoders) | attention (Table 1)
    n_critics: int = 2  # 2: twin critics (Prop. 6) | 1: MAAC's single critic

    RECURRENT_ALGOS = ("f2a2_sac",)  # GRU actors on MAAC's sequences (the critic copies stay feed-forward)

    def validate(self) -> None:
        super().validate()
        self.validate_off_policy()
        if self.share not in SHARE:
            raise ConfigError(f"algo.share={self.share!r} is not allowed; choose one of {', '.join(SHARE)}")
        if self.n_critics not in (1, 2):
            raise ConfigError(f"algo.n_critics={self.n_critics!r} must be 1 or 2")


class F2A2SAC(f2a2.OffPolicyCopies, MAAC):
    def __init__(self, env, cfg: F2A2SACConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.setup_copies(env, cfg)

    def policy_log_probs(self, actor_params, obs, avail):
        return self.log_policies(actor_params, obs, avail)[1]

    def output_log_probs(self, outputs, avail):
        return self.with_log_probs(outputs, avail)[1]

    def batch_log_probs(self, actor_params, batch):
        return self.batch_policies(actor_params, batch)[1]

    def shared_scalars(self, copies) -> int:
        mask = jax.tree.leaves(self.shared_mask(copies))
        return sum(int(np.prod(x.shape[1:])) for m, x in zip(mask, jax.tree.leaves(copies)) if m)

    def critic_stacked(self) -> bool:
        return True

    # ---- copies ------------------------------------------------------------------------------------
    def init_networks(self, key):
        actors, critic = super().init_networks(key)
        obs = tuple(jnp.zeros((g.n, g.obs_dim)) for g in self.groups)
        act = tuple(jnp.zeros((g.n, g.action_space.n)) for g in self.groups)
        critics = [critic] + [self.critic.init(jax.random.fold_in(key, 100 + k), obs, act) for k in range(1, self.cfg.n_critics)]
        return actors, tuple(f2a2.copies_of(c, self.n_agents) for c in critics)

    def shared_mask(self, critics):
        """Per leaf: whether it is a consensus variable (``share``)."""
        prefixes = SHARE[self.cfg.share]

        def shared(path, _):
            name = str(getattr(path[2], "key", "")) if len(path) > 2 else ""
            return prefixes is None or name.startswith(prefixes)

        return jax.tree_util.tree_map_with_path(shared, critics)

    def masked(self, mask, a, b):
        return jax.tree.map(lambda m, x, y: x if m else y, mask, a, b)

    def own(self, q: tuple) -> tuple:
        """Per group ``[n_copies, ..., n_g, A]`` -> ``[..., n_g, A]``: agent ``i``'s output of copy ``i``."""
        out = []
        for g, (grp, qg) in enumerate(zip(self.groups, q)):
            k = np.arange(grp.n)
            out.append(jnp.moveaxis(qg[self.offsets[g] + k, ..., k, :], 0, -2))
        return tuple(out)

    def copies_q(self, copies, obs, act, weight=None):
        """Every agent's ``Q_i(o, (., a_-i))`` from its own copy, and its own row of attention-logit penalty ``[N]``
        (over the samples whose ``weight`` is true: recurrent actors' padded steps excluded)."""
        ax = self.batch_axis  # per-agent batches: copy i reads agent i's
        q, logits = jax.vmap(self.critic.apply, in_axes=(0, ax, ax))(copies, obs, act)  # logits [n, B, H, N, N]
        idx = jnp.arange(self.n_agents)
        rows = logits[idx, ..., idx, :]  # [N, B, H, N]: copy i's row i
        if weight is None:
            pen = jnp.sum(jnp.square(rows).reshape(self.n_agents, -1), 1) / (logits.shape[1] * max(self.n_agents - 1, 1))
        else:
            pen = batch_mean(jnp.sum(jnp.square(rows), (2, 3)), weight, axis=1) / max(self.n_agents - 1, 1)
        return self.own(q), pen

    def q_values(self, critic_params, obs, act):
        return self.copies_q(critic_params[0], obs, act)

    # ---- teammate models ---------------------------------------------------------------------------
    def joint_q(self, copies, obs, joint: tuple):
        """Every agent's ``Q_i`` from its own copy at its own joint action (``joint`` per group ``[N, B, n_g]``)."""
        q, _ = jax.vmap(self.critic.apply, in_axes=(0, self.batch_axis, 0))(copies, obs, self.onehot(joint))
        return self.own(q)

    # ---- one gradient step ---------------------------------------------------------------------------
    def soft_target(self, target_actor_params, target_critic_params, batch, key):
        """MAAC's soft target on each agent's own reward with the minimum over its twin target copies."""
        cfg = self.cfg
        _, next_logp = self.batch_policies(target_actor_params, batch, nxt=True)
        next_a = self.sample(next_logp, key)  # per-agent batches: every agent's next action at every agent's batch
        own_a = self.own_rows(next_a)
        if cfg.moa:  # the others' next actions from each agent's teammate models
            joint = self.observer_actions(next_a, batch["moa"]["next"], jax.random.fold_in(key, 7))
            qs = [self.gather(self.joint_q(c, batch["next_obs"], joint), own_a) for c in target_critic_params]
        else:
            qs = [self.gather(self.copies_q(c, batch["next_obs"], self.onehot(next_a))[0], own_a) for c in target_critic_params]
        q_next = jnp.min(jnp.stack(qs), 0)
        not_done = 1.0 - self.own_steps(batch["terminated"]).astype(jnp.float32)
        y = (self.own_agents(batch["reward"]) + cfg.gamma * not_done * q_next
             - self.gather(self.own_rows(next_logp), own_a) / cfg.soft_reward_scale)
        return jax.lax.stop_gradient(y)

    def resampled_q(self, copies, batch, a_hat, key):
        """``Q_i(o, a^)`` per agent: the others' resampled actions from the true policies or the teammate models."""
        if not self.cfg.moa:
            return self.copies_q(copies, batch["obs"], self.onehot(a_hat))[0]
        joint = self.observer_actions(a_hat, batch["moa"]["now"], jax.random.fold_in(key, 9))
        return self.joint_q(copies, batch["obs"], joint)

    def terms(self, actor_params, state, batch, key):
        """MAAC's policy terms; with teammate models the baseline and ``Q`` read each agent's own joint action; with
        per-agent batches every agent's terms at its own batch (``actions``: everyone's resampled actions at every batch)."""
        if not self.cfg.moa and not self.per_agent_batch:
            return self.policy_terms(actor_params, state.critic_params, batch, key, state.extra["old_actor"])
        logits, logp = self.batch_policies(actor_params, batch)
        acts = self.sample(jax.lax.stop_gradient(logp), key)
        q_all = jax.lax.stop_gradient(self.resampled_q(state.critic_params[0], batch, acts, key))
        logits, logp, own_a = self.own_rows(logits), self.own_rows(logp), self.own_rows(acts)
        baseline = jnp.concatenate([jnp.sum(jax.lax.stop_gradient(jnp.exp(lp)) * q, -1) for lp, q in zip(logp, q_all)], -1)
        q = self.gather(q_all, own_a)
        _, old = jax.lax.stop_gradient(self.batch_policies(state.extra["old_actor"], batch))
        old = self.own_rows(old)
        return PolicyTerms(logits, logp, acts, self.gather(logp, own_a), q_all, q, baseline, q - baseline, old, self.gather(old, own_a))

    def critic_step(self, state, batch, key):
        cfg = self.cfg
        y, a0, w = batch["y"], batch["actions"], batch.get("weight")  # w: padded steps excluded (recurrent actors)
        wb = self.steps_weight(batch)  # as the [B, N] terms (per-agent batches: column i, agent i's batch)
        _, logp = jax.lax.stop_gradient(self.batch_policies(state.actor_params, batch))
        a_hat = self.sample(logp, key)
        own0, own_hat = self.own_rows(a0), self.own_rows(a_hat)  # each agent's own actions (per-agent batches: from its batch)
        rho_f, rho_b = self.ratios(self.own_rows(logp), batch, own_hat)

        def loss(critics):
            qb = [self.copies_q(c, batch["obs"], self.onehot(a0), w) for c in critics]
            pen = qb[0][1]
            qb = [self.gather(q, own0) for q, _ in qb]
            # Li et al. 2023, Prop. 6 (reward convention): the buffer half; critic 2 has no alpha1 term
            per = sum(f2a2.critic_surrogate(q, y, cfg.alpha1 if j == 0 else 0.0, cfg.alpha2, cfg.joint, rho_f) for j, q in enumerate(qb))
            if cfg.joint:  # the resampled half: -alpha1 Q1(a^) + alpha2 rho_b sum_j (Qj(a^) - y)^2
                qr = [self.gather(self.resampled_q(c, batch, a_hat, key), own_hat) for c in critics]
                res = -cfg.alpha1 * qr[0] + cfg.alpha2 * rho_b * sum(jnp.square(q - y) for q in qr)
                per = self.half(per, res)
            per_agent = batch_mean(per, wb) + cfg.attention_penalty * pen
            return per_agent.sum(), (per_agent, batch_mean(qb[0], wb), batch_mean(qb[0] - y, wb))

        grads, (c_loss, q_mean, offset) = jax.grad(loss, has_aux=True)(state.critic_params)
        cons = self.consensus(state)
        mask = self.shared_mask(grads)
        pen_grads = f2a2.penalty_grads(cfg, cons, state.critic_params)  # eq. 5.4a, shared leaves only
        grads = jax.tree.map(lambda m, g, p: g + p if m else g, mask, grads, pen_grads)
        critic, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        mean_critic, cons = f2a2.after_critic(cfg.consensus, cons, critic)
        critic = self.masked(mask, mean_critic, critic)
        state = state._replace(critic_params=critic, critic_opt=critic_opt, extra=self.with_consensus(state.extra, cons))
        return state, {"loss/critic": c_loss.mean(), "diag/critic_loss_per_agent": c_loss, "diag/q_per_agent": q_mean,
                       "diag/critic_offset_per_agent": offset, "diag/ratio_forward_per_agent": batch_mean(rho_f, wb),
                       "diag/ratio_backward_per_agent": batch_mean(rho_b, wb)}

    def actor_step(self, state, batch, key):
        cfg, y, w = self.cfg, batch["y"], self.steps_weight(batch)  # w: padded steps excluded (recurrent actors)

        def actor_loss(actor_params):
            terms = self.terms(actor_params, state, batch, key)
            f_hat = terms.logp_a / cfg.soft_reward_scale - terms.adv  # MAAC's coefficient (Iqbal & Sha 2019, eq. 4)
            per = terms.logp_a * jax.lax.stop_gradient(cfg.alpha1 * f_hat)
            if cfg.joint:
                logp = jax.lax.stop_gradient(terms.logp)
                own_hat, own0 = self.own_rows(terms.actions), self.own_rows(batch["actions"])
                rho_f, rho_b = self.ratios(logp, batch, own_hat)
                d2 = sum(jnp.square(self.gather(self.resampled_q(c, batch, terms.actions, key), own_hat) - y)
                         for c in state.critic_params)  # delta^_j^2 at the resampled actions (Li et al. 2023, Prop. 6)
                per = per + terms.logp_a * jax.lax.stop_gradient(cfg.alpha2 * rho_b * d2)
                q0, _ = self.q_values(state.critic_params, batch["obs"], self.onehot(batch["actions"]))
                q0 = jax.lax.stop_gradient(q0)
                b0 = jnp.concatenate([jnp.sum(jnp.exp(lp) * q, -1) for lp, q in zip(logp, q0)], -1)
                logp0 = self.gather(terms.logp, own0)
                f0 = jax.lax.stop_gradient(logp0 / cfg.soft_reward_scale - (self.gather(q0, own0) - b0))
                per = self.half(rho_f * logp0 * cfg.alpha1 * f0, per)  # the buffer half
            if w is None:
                reg = jnp.concatenate([jnp.mean(jnp.square(lg), axis=(0, -1)) for lg in terms.logits])
            else:
                reg = jnp.concatenate([batch_mean(jnp.mean(jnp.square(lg), -1), self.group_weight(w, g)) for g, lg in enumerate(terms.logits)])
            per_agent = batch_mean(per, w) + cfg.policy_reg * reg
            return per_agent.sum(), (per_agent, jax.lax.stop_gradient(terms))

        grads, (a_loss, terms) = jax.grad(actor_loss, has_aux=True)(state.actor_params)
        actor_params, actor_opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
        metrics = {"loss/actor": a_loss.mean(), "diag/actor_loss_per_agent": a_loss, "diag/advantage_per_agent": batch_mean(terms.adv, w),
                   "diag/kl_delta_per_agent": batch_mean(terms.logp_a - terms.old_logp_a, w)}
        return state._replace(actor_params=actor_params, actor_opt=actor_opt), terms, metrics

    def train_step(self, state, batch, key):
        """MAAC's order with the soft target computed once for both steps, then one consensus event (eq. 5.4c/d)."""
        k_next, k_act = jax.random.split(key)
        batch = self.teammates(state, batch, jax.random.fold_in(key, 11))
        batch = dict(batch, y=self.soft_target(state.target_actor_params, state.target_critic_params, batch, k_next))
        pre_actor = state.actor_params
        state, metrics = self.critic_step(state, batch, jax.random.fold_in(key, 3))
        state, terms, actor_metrics = self.actor_step(state, batch, k_act)
        state, more = self.after_actors(state, batch, terms, pre_actor, jax.random.fold_in(key, 2))
        cfg, cons = self.cfg, self.consensus(state)
        tied, cons = f2a2.tie_copies(cfg, cons, state.critic_params, jax.random.fold_in(key, 4), self.protocol)
        mask = self.shared_mask(state.critic_params)
        critic = self.masked(mask, tied, state.critic_params)
        state = state._replace(critic_params=critic, extra=self.with_consensus(state.extra, cons))
        shared_only = [x for m, x in zip(jax.tree.leaves(mask), jax.tree.leaves(critic)) if m]
        cm = f2a2.consensus_metrics(cfg.consensus, cons._replace(dual=[d for m, d in zip(jax.tree.leaves(mask), jax.tree.leaves(cons.dual)) if m]), shared_only)
        if cfg.moa:
            state, mm = self.moa_step(state, batch)
            cm.update(mm)
        return self.update_targets(state), {**metrics, **actor_metrics, **more, **cm}


register_algo(
    "f2a2_sac", F2A2SACConfig, F2A2SAC,
    "F2A2-SAC: per-agent copies of MAAC's attention critic on own rewards, joint objective, consensus (Li et al. 2023)",
    family="off-policy", action_kinds=("discrete",),
)
