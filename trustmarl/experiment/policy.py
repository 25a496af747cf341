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

__all__ = ["Policy", "load_policy"]


def load_policy(run_dir: str | Path, seed: int = 0, key: int = 0) -> Policy:
    """The policy of seed ``seed`` (``0 .. num_seeds - 1``) of a run's last checkpoint (replay buffers are
    not read); ``key`` seeds the samples of ``act(..., deterministic=False)``."""
    from trustmarl.experiment.runner import load_run_state

    cfg, algo, state, _ = load_run_state(Path(run_dir), policy_only=True)
    if not isinstance(seed, int) or not 0 <= seed < cfg.num_seeds:
        raise ConfigError(f"seed={seed!r} must be an integer in 0..{cfg.num_seeds - 1} (the run has {cfg.num_seeds} seeds)")
    view = jax.tree.map(lambda x: x[seed], jax.vmap(algo.policy_view)(state))
    return Policy(algo, view, jax.random.PRNGKey(key))


class Policy:
    """One seed's policy acting on one environment copy (see the module docstring).

    ``agents``: the agents' names per group (PettingZoo names on host environments), in the order of
    the per-group arrays; ``algo``: the algorithm object, ``view``: what it acts with."""

    def __init__(self, algo, view, key: jax.Array):
        self.algo, self.view, self._key = algo, view, key
        self.groups = tuple(algo.env.groups)
        self.agents = tuple(tuple(g.agents) for g in self.groups)

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

        unknown = sorted(set(obs) - {a for names in self.agents for a in names})
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
