"""A trained policy in one call: ``trustmarl.load_policy(run_dir, seed=0)``.

The policy reads the run's last checkpoint without its replay buffer and acts on the environment's own
observations, one environment copy at a time::

    policy = trustmarl.load_policy("runs/maddpg_spread", seed=0)

    # a PettingZoo Parallel env (host environments): dicts in, dicts out
    obs, infos = env.reset(seed=0)
    policy.reset()  # at every episode start (recurrent policies carry a hidden state)
    while env.agents:
        obs, rewards, terms, truncs, infos = env.step(policy.act(obs, infos=infos))

    # a JAX-native env: per-group arrays in (or the TimeStep), per-group actions out
    env = trustmarl.make_env("mpe/simple_spread")
    state, ts = env.reset(jax.random.PRNGKey(0))
    policy.reset()
    state, ts = env.step(jax.random.PRNGKey(1), state, policy.act(ts))

Actions are what the run's own deterministic evaluation (``trustmarl eval``) takes on the same
observations: the greedy action, the Gaussian mean (``deterministic=False``: samples from the
behaviour policy). Action masks come from ``avail`` (per-group boolean arrays, or a dict per agent),
else from a PettingZoo observation's ``"action_mask"`` entry or ``infos[agent]["action_mask"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import TimeStep
from trustmarl.experiment.config import ConfigError

__all__ = ["FrozenRun", "Policy", "load_policy", "policy_source"]


def load_policy(run_dir: str | Path, seed: int = 0, key: int = 0, checkpoint: str | Path | None = None) -> Policy:
    """The policy of seed ``seed`` (``0 .. num_seeds - 1``) of a run's last checkpoint, or of ``checkpoint`` (a
    file of the run, e.g. a kept ``checkpoints/update_NNNNNNN.npz``; replay buffers are never read); ``key``
    seeds the samples of ``act(..., deterministic=False)``."""
    frozen = FrozenRun(run_dir)
    view, _ = frozen.view(seed, checkpoint)
    return Policy(frozen.algo, jax.tree.map(lambda x: x[0], view), jax.random.PRNGKey(key))


def policy_source(spec: str | Path) -> tuple[Path, Path | None]:
    """``(run_dir, checkpoint)`` of a run directory (``checkpoint`` ``None``: its last one) or of a checkpoint
    file inside a run's ``checkpoints/`` folder; ``ConfigError`` naming the path otherwise."""
    from trustmarl.experiment.runner import is_run_dir

    path = Path(spec)
    if path.is_dir():
        if not is_run_dir(path):
            raise ConfigError(f"{str(path)!r} is not a trustmarl run directory (no config.yaml)")
        return path, None
    if path.is_file():
        run_dir = path.parent.parent
        if path.parent.name != "checkpoints" or not is_run_dir(run_dir):
            raise ConfigError(f"{str(path)!r} is not a checkpoint inside a run directory (RUN_DIR/checkpoints/*.npz)")
        return run_dir, path
    raise ConfigError(f"{str(path)!r} does not exist (expected a run directory or one of its checkpoints)")


class FrozenRun:
    """A run's algorithm, built once, and the frozen policies of its checkpoints: the one loader behind
    :func:`load_policy`, agents with a fixed policy (run keys ``fixed_agents`` / ``fixed_policy``) and
    ``trustmarl crossplay``. ``run_dir``: a run directory or a checkpoint inside one (:func:`policy_source`).
    ``env_params``: the same env with these keys changed (e.g. a larger MAgent2 battle map for a shared policy)."""

    def __init__(self, run_dir: str | Path, env_params: dict | None = None):
        from trustmarl.experiment.backends import build_algorithm, make_backend
        from trustmarl.experiment.checkpoint import read_meta
        from trustmarl.experiment.runner import LAST_CHECKPOINT, RunDirError, load_run_config, with_env_params

        self.run_dir, self.checkpoint = policy_source(run_dir)
        self.env_params = dict(env_params or {})
        self.cfg = load_run_config(self.run_dir)
        last = self.run_dir / LAST_CHECKPOINT
        if self.checkpoint is None:
            if not last.is_file():
                raise RunDirError(f"{str(self.run_dir)!r} has no checkpoint ({LAST_CHECKPOINT})")
            self.checkpoint = last
        updates = int(read_meta(self.checkpoint)["counters"].get("total_updates", 1))
        def built(cfg):
            algo = build_algorithm(cfg, updates)
            backend = make_backend(cfg, algo)
            try:
                return algo, backend.template()  # shapes only: no env is started, nothing allocated
            finally:
                backend.close()

        self.algo, self.template = built(self.cfg)
        self.source = None
        if self.env_params:  # the checkpoints hold the run's own shapes; the policy acts on the other env
            self.source = (self.algo, self.template)
            self.cfg = with_env_params(self.cfg, self.env_params)
            self.algo, self.template = built(self.cfg)

    def views(self, checkpoint: str | Path | None = None) -> tuple[Any, dict]:
        """``(views, counters)``: every seed's policy view (``algo.policy_view``, leading seed axis) in
        ``checkpoint`` (default: the one this run was opened with) and that checkpoint's counters."""
        from trustmarl.experiment.runner import read_checkpoint, transfer_state

        if self.source is None:
            state, counters = read_checkpoint(Path(checkpoint or self.checkpoint), self.algo, self.template, policy_only=True)
        else:
            algo, template = self.source
            state, counters = read_checkpoint(Path(checkpoint or self.checkpoint), algo, template, policy_only=True)
            state = transfer_state(algo, state, self.algo, self.template, f"the policy of {str(self.run_dir)!r}",
                                   f"{self.cfg.env.name} with {self.env_params}")
        return jax.vmap(self.algo.policy_view)(state), counters

    def view(self, seed: int = 0, checkpoint: str | Path | None = None) -> tuple[Any, dict]:
        """``(view, counters)``: seed ``seed``'s policy view with a leading axis of 1."""
        views, counters = self.views(checkpoint)
        n = jax.tree.leaves(views)[0].shape[0]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < n:
            raise ConfigError(f"seed={seed!r} must be an integer in 0..{n - 1} (the run {str(self.run_dir)!r} has {n} seeds)")
        return jax.tree.map(lambda x: x[seed:seed + 1], views), counters


class Policy:
    """One seed's policy acting on one environment copy (see the module docstring).

    ``agents``: the agents' names per group (PettingZoo names on host environments), in the order of
    the per-group arrays; ``algo``: the algorithm object, ``view``: what it acts with. A run trained with
    fixed agents (run key ``fixed_agents``) acts for its learners only: ``fixed_agents`` names the others,
    whose entries in an observation dict are ignored (their actions are the caller's)."""

    def __init__(self, algo, view, key: jax.Array):
        self.algo, self.view, self._key = algo, view, key
        self.groups = tuple(algo.env.groups)
        self.agents = tuple(tuple(g.agents) for g in self.groups)
        layout = getattr(getattr(algo.env, "actor", None), "layout", None)  # a run with fixed agents (run key fixed_agents)
        self.fixed_agents = tuple(layout.fixed) if layout is not None else ()  # not acted for; their observations are ignored

        def act(view, carry, obs, avail, key, deterministic):
            return algo.eval_actions(view, carry, obs, avail, jnp.zeros((1,), bool), key, deterministic)

        self._act = jax.jit(act, static_argnums=5)
        self.reset()

    def reset(self) -> None:
        """Start a new episode: a fresh recurrent state (nothing to reset for feed-forward policies)."""
        self.carry = self.algo.init_carry((1,))
        self._t = 0

    def act(self, obs: Any, avail: Any = None, deterministic: bool = True, infos: Mapping | None = None):
        """The actions for one step. ``obs``: a dict ``{agent: observation}`` (PettingZoo; returns
        ``{agent: action}`` for the agents in it), per-group arrays ``[n_g, obs_dim]`` (JAX-native envs;
        one array for a one-group env) or a ``TimeStep`` (its ``obs`` and ``avail``); returns per-group
        actions ``[n_g]`` (discrete) / ``[n_g, dim]`` (continuous) as the env's ``step`` takes them."""
        if isinstance(obs, TimeStep):
            obs, avail = obs.obs, obs.avail if avail is None else avail
        as_dict = isinstance(obs, Mapping)
        o, a = self._from_dict(obs, avail, infos) if as_dict else self._from_groups(obs, avail)
        key = jax.random.fold_in(self._key, self._t)
        actions, self.carry = self._act(self.view, self.carry, o, a, key, bool(deterministic))
        self._t += 1
        actions = [np.asarray(x)[0] for x in jax.device_get(actions)]
        return self._to_dict(actions, obs) if as_dict else tuple(actions)

    # ---- conversions ------------------------------------------------------------------------------
    def _from_groups(self, obs: Any, avail: Any) -> tuple[tuple, tuple]:
        if not isinstance(obs, (tuple, list)):
            obs = (obs,)
        if len(obs) != len(self.groups):
            raise ValueError(f"expected observations for {len(self.groups)} agent group(s), got {len(obs)}")
        o = tuple(jnp.asarray(x, jnp.float32).reshape(1, g.n, g.obs_dim) for x, g in zip(obs, self.groups))
        if avail is None:
            a = tuple(jnp.ones((1, g.n, g.avail_dim), bool) for g in self.groups)
        else:
            avail = avail if isinstance(avail, (tuple, list)) else (avail,)
            a = tuple(jnp.asarray(x, bool).reshape(1, g.n, g.avail_dim) for x, g in zip(avail, self.groups))
        return o, a

    def _from_dict(self, obs: Mapping, avail: Mapping | None, infos: Mapping | None) -> tuple[tuple, tuple]:
        from trustmarl.envs.host.pettingzoo_adapter import action_mask, observation_array

        unknown = sorted(set(obs) - {a for names in self.agents for a in names} - set(self.fixed_agents))
        if unknown:
            raise ValueError(f"observations of unknown agents {unknown}; this policy's agents: {list(self.agents)}")
        o, a = [], []
        for g in self.groups:
            rows, masks = [], []
            for name in g.agents:  # an agent absent from obs (it left) gets zeros; its action is not returned
                raw = obs.get(name)
                rows.append(observation_array(raw) if raw is not None else np.zeros(g.obs_dim, np.float32))
                if avail is not None and name in avail:
                    masks.append(np.asarray(avail[name], bool).reshape(g.avail_dim))
                else:
                    masks.append(action_mask(g, raw, (infos or {}).get(name)))
            o.append(jnp.asarray(np.stack(rows))[None])
            a.append(jnp.asarray(np.stack(masks).reshape(g.n, g.avail_dim))[None])
        return tuple(o), tuple(a)

    def _to_dict(self, actions: list, obs: Mapping) -> dict:
        out = {}
        for g, acts in zip(self.groups, actions):
            for i, name in enumerate(g.agents):
                if name in obs:
                    out[name] = int(acts[i]) if acts.ndim == 1 else np.asarray(acts[i])
        return out
