"""Agents with a fixed policy: run keys ``fixed_agents`` and ``fixed_policy``, for every algorithm and env kind.

``fixed_agents`` names agents of the environment (a list of names, or a prefix such as ``blue_`` or
``agent_1``) whose actions come from a frozen policy instead of the learner: ``fixed_policy=random``
(uniform over the available actions; uniform in the box for continuous actions, the default) or a run
directory, or a checkpoint file inside one (``RUN/checkpoints/update_0000100.npz``), whose policy
(seed ``fixed_seed``) acts for them, loaded by :class:`~trustmarl.experiment.policy.FrozenRun` as
``trustmarl.load_policy`` loads it. The frozen policy samples its actions (``fixed_deterministic=true``:
the run's deterministic evaluation actions, the greedy action or the Gaussian mean).

It is an **environment wrapper**, built once in :func:`trustmarl.experiment.backends.env_info`, so the
algorithms need no change: the learner's env has only the other agents (its groups, buffer, returns,
progress bar and summary never see the fixed ones), and the fixed agents' return (their mean, summed
over the episode) is an env outcome ``fixed_return``, logged as ``episode_fixed_return`` and
``eval/fixed_return``, apart from the learners' return.

- JAX-native envs: :class:`FixedAgentsEnv`, a ``MultiAgentEnv`` whose ``step`` runs the frozen policy
  inside the jitted env step (its parameters are constants of the compiled program; a recurrent policy's
  hidden state lives in the env state).
- Host envs: :class:`FixedAgentsVecEnv` around the :class:`~trustmarl.envs.host.HostVecEnv`, acting for
  the fixed agents of every copy in one jitted call in the training process.

The frozen policy acts on the environment's own observations of the agents it was trained for (matched
by name, so a policy of the whole game, e.g. self-play, or of a run that itself had fixed agents both
work); a policy whose agents, observation widths or action spaces do not fit is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import Discrete, GroupedAgents, MultiAgentEnv, RenderError, TimeStep, strong_types
from trustmarl.validation import ConfigError

RANDOM = "random"  # fixed_policy: uniform over the available actions
INFO_KEY = "fixed_return"  # the env outcome holding the fixed agents' return (logged as episode_fixed_return)


def match_agents(names: str | tuple | list, agents: tuple[str, ...]) -> tuple[str, ...]:
    """The agents ``names`` gives (a list of names, or a prefix), in the env's order; ``ConfigError`` when it
    names an unknown agent, none or all of them."""
    if isinstance(names, str):
        fixed = tuple(a for a in agents if a.startswith(names))
        what = f"fixed_agents={names!r} (a prefix)"
    else:
        unknown = [a for a in names if a not in agents]
        if unknown:
            raise ConfigError(f"fixed_agents names unknown agent(s) {unknown}; the env's agents: {', '.join(agents)}")
        fixed = tuple(a for a in agents if a in set(names))
        what = f"fixed_agents={list(names)!r}"
    if not fixed:
        raise ConfigError(f"{what} matches no agent; the env's agents: {', '.join(agents)}")
    if len(fixed) == len(agents):
        raise ConfigError(f"{what} matches every agent, leaving none to learn; the env's agents: {', '.join(agents)}")
    return fixed


# ---- who is where ------------------------------------------------------------------------------

class Layout:
    """Index bookkeeping between the env's groups (all agents) and the learner's (the others): static numpy
    indices, used the same way on JAX arrays (in a jitted step) and on numpy arrays (host envs).

    Arrays carry leading batch axes; per-group arrays are ``[..., n_g, ...]`` with the agent axis at
    ``axis`` counted from the left after the batch axes."""

    def __init__(self, groups: tuple, fixed: tuple[str, ...]):
        self.inner, self.fixed = tuple(groups), tuple(fixed)
        fixed_set = set(fixed)
        self.groups, self.learner_of, self.keep, self.fixed_idx = [], [], [], []
        for g in self.inner:
            keep = np.array([i for i, a in enumerate(g.agents) if a not in fixed_set], np.int32)
            self.keep.append(keep)
            self.fixed_idx.append(np.array([i for i, a in enumerate(g.agents) if a in fixed_set], np.int32))
            self.learner_of.append(len(self.groups) if keep.size else None)
            if keep.size:
                self.groups.append(dataclasses.replace(g, agents=tuple(g.agents[i] for i in keep)))
        self.groups = tuple(self.groups)
        names = [a for g in self.inner for a in g.agents]
        self.learner_global = np.array([i for i, a in enumerate(names) if a not in fixed_set], np.int32)
        self.fixed_global = np.array([i for i, a in enumerate(names) if a in fixed_set], np.int32)
        # inner group g's actions = concatenate([learner's, fixed ones])[perm[g]]
        self.perm = []
        for keep, fix in zip(self.keep, self.fixed_idx):
            order = np.empty(keep.size + fix.size, np.int32)
            order[keep], order[fix] = np.arange(keep.size), keep.size + np.arange(fix.size)
            self.perm.append(order)

    def learner_groups(self, per_group: tuple, b: int) -> tuple:
        """The learner's per-group arrays from the env's (``b`` batch axes before the agent axis)."""
        return tuple(x[(slice(None),) * b + (keep,)] for x, keep, lg in zip(per_group, self.keep, self.learner_of)
                     if lg is not None)

    def actions(self, learner: tuple, fixed: tuple, b: int, xp=jnp) -> tuple:
        """The env's per-group actions from the learner's and the fixed agents' (``fixed[g]``: ``[..., n_fixed_g]``)."""
        out = []
        for g, (perm, lg) in enumerate(zip(self.perm, self.learner_of)):
            if lg is None:  # every agent of the group is fixed
                out.append(xp.asarray(fixed[g]))
            elif not self.fixed_idx[g].size:
                out.append(learner[lg])
            else:
                mine = xp.asarray(learner[lg])
                both = xp.concatenate([mine, xp.asarray(fixed[g]).astype(mine.dtype)], axis=b)
                out.append(both[(slice(None),) * b + (perm,)])
        return tuple(out)

    def timestep(self, ts: TimeStep, fixed_return, b: int) -> TimeStep:
        """The learner's view of the env's ``TimeStep`` (``fixed_return`` joins ``info``)."""
        idx = (slice(None),) * b
        return ts._replace(
            obs=self.learner_groups(ts.obs, b), avail=self.learner_groups(ts.avail, b),
            final_obs=self.learner_groups(ts.final_obs, b), final_avail=self.learner_groups(ts.final_avail, b),
            reward=ts.reward[idx + (self.learner_global,)], active=ts.active[idx + (self.learner_global,)],
            info={**ts.info, INFO_KEY: fixed_return},
        )

    def fixed_reward(self, reward, b: int):
        """The fixed agents' mean reward of a step."""
        return reward[(slice(None),) * b + (self.fixed_global,)].mean(-1)


class FrozenActor:
    """The fixed agents' actions from the env's per-group observations ``[B, n_g, obs_dim]`` (one batch axis):
    ``random``, or a frozen policy ``(algo, view)`` acting on the observations of its own agents."""

    def __init__(self, layout: Layout, algo=None, view=None, deterministic: bool = False):
        self.layout, self.algo, self.view, self.deterministic = layout, algo, view, bool(deterministic)
        if algo is None:
            return
        where = {a: (g, i) for g, grp in enumerate(layout.inner) for i, a in enumerate(grp.agents)}
        self.sources = [[where[a] for a in pg.agents] for pg in algo.env.groups]  # policy group -> env (group, index)
        pos = {a: (p, j) for p, pg in enumerate(algo.env.groups) for j, a in enumerate(pg.agents)}
        self.targets = [[pos[g.agents[i]] for i in fix] for g, fix in zip(layout.inner, layout.fixed_idx)]

    def init_carry(self, batch: tuple[int, ...]):
        return () if self.algo is None else self.algo.init_carry(batch)

    @staticmethod
    def _gather(arrays: tuple, srcs: list) -> jax.Array:
        gs = {g for g, _ in srcs}
        if len(gs) == 1:
            return jnp.asarray(arrays[gs.pop()])[:, np.array([i for _, i in srcs])]
        return jnp.stack([jnp.asarray(arrays[g])[:, i] for g, i in srcs], axis=1)

    def __call__(self, carry, obs: tuple, avail: tuple, done, key: jax.Array, view=None, deterministic: bool | None = None):
        """``(actions, carry)``: per env group the fixed agents' actions ``[B, n_fixed_g, ...]`` (``()`` for a group
        without fixed agents). ``view`` / ``deterministic`` replace the actor's own (crossplay batches views)."""
        lay = self.layout
        view = self.view if view is None else view
        deterministic = self.deterministic if deterministic is None else bool(deterministic)
        if self.algo is None:
            out = []
            for g, (grp, fix) in enumerate(zip(lay.inner, lay.fixed_idx)):
                k = jax.random.fold_in(key, g)
                if not fix.size:
                    out.append(())
                elif isinstance(grp.action_space, Discrete):
                    logits = jnp.where(jnp.asarray(avail[g])[:, fix], 0.0, -jnp.inf)
                    out.append(jax.random.categorical(k, logits, axis=-1).astype(jnp.int32))
                else:
                    sp = grp.action_space
                    shape = (jnp.shape(obs[g])[0], fix.size, sp.dim)
                    out.append(jax.random.uniform(k, shape, minval=sp.low, maxval=sp.high))
            return tuple(out), carry
        pobs = tuple(self._gather(obs, s) for s in self.sources)
        pav = tuple(self._gather(avail, s) for s in self.sources)
        acts, carry = self.algo.eval_actions(view, carry, pobs, pav, done, key, deterministic)
        out = []
        for tg in self.targets:  # groups without fixed agents: () (Layout.actions does not read them)
            out.append(self._gather(acts, tg) if tg else ())
        return tuple(out), carry


def check_fits(policy_groups: tuple, groups: tuple, acting: tuple[str, ...], src: str, env_name: str) -> None:
    """A policy trained for the agents of ``policy_groups`` can act for ``acting`` on an env with ``groups``: it has
    a policy for each of them, and each agent it was trained for exists with the same observation width and
    action space (it acts on their observations); ``ConfigError`` naming ``src`` otherwise."""
    env_groups = {a: g for g in groups for a in g.agents}
    mine = {a: g for g in policy_groups for a in g.agents}
    missing = [a for a in acting if a not in mine]
    if missing:
        raise ConfigError(f"{src} has no policy for agent(s) {missing}; its agents: {', '.join(mine)}")
    for a in sorted(mine, key=lambda a: a not in acting):  # the acting agents first
        pg, g = mine[a], env_groups.get(a)
        if g is None:
            raise ConfigError(f"{src} acts for agent {a!r}, which {env_name} does not have; its agents: "
                              f"{', '.join(env_groups)}")
        if (g.obs_dim, g.action_space) != (pg.obs_dim, pg.action_space):
            raise ConfigError(f"{src} does not fit agent {a!r} of {env_name}: the policy's observation width "
                              f"{pg.obs_dim} and actions {pg.action_space}, the env's {g.obs_dim} and {g.action_space}")


def load_actor(cfg, groups: tuple, fixed: tuple[str, ...], env_name: str) -> FrozenActor:
    """The :class:`FrozenActor` of ``cfg.fixed_policy`` for ``fixed`` on an env with ``groups``; refuses a policy
    whose agents or spaces do not fit (one line)."""
    layout = Layout(groups, fixed)
    if cfg.fixed_policy in (None, RANDOM):
        return FrozenActor(layout)
    from trustmarl.experiment.policy import FrozenRun

    frozen = FrozenRun(cfg.fixed_policy)
    mine = {a for g in frozen.algo.env.groups for a in g.agents}
    if frozen.cfg.env.name == env_name and frozen.cfg.env.params != cfg.env.params and not set(fixed) <= mine:
        # the same env at another size (e.g. a battle self-play policy from another map): the frozen run's
        # policy acts on this env's agents when its parameters fit them (shared networks); refused otherwise
        frozen = FrozenRun(cfg.fixed_policy, env_params=cfg.env.params)
    src = f"fixed_policy={cfg.fixed_policy!r} ({frozen.cfg.algo.name} on {frozen.cfg.env.name})"
    check_fits(frozen.algo.env.groups, groups, fixed, src, env_name)
    if cfg.fixed_seed >= frozen.cfg.num_seeds:
        raise ConfigError(f"fixed_seed={cfg.fixed_seed} must be in 0..{frozen.cfg.num_seeds - 1}: {src} trained "
                          f"{frozen.cfg.num_seeds} seed(s)")
    view, _ = frozen.view(cfg.fixed_seed)
    return FrozenActor(layout, frozen.algo, jax.tree.map(lambda x: x[0], view), cfg.fixed_deterministic)


def with_fixed_agents(cfg, env):
    """``env`` (a JAX-native env or a host env's description) with ``cfg.fixed_agents`` acting by
    ``cfg.fixed_policy``; ``env`` itself when no agent is fixed."""
    if cfg.fixed_agents is None:
        return env
    fixed = match_agents(cfg.fixed_agents, tuple(env.agents))
    actor = load_actor(cfg, tuple(env.groups), fixed, cfg.env.name)
    if isinstance(env, MultiAgentEnv):
        return FixedAgentsEnv(env, actor)
    return FixedHostInfo(env, actor)


# ---- JAX-native environments ---------------------------------------------------------------------

class FixedState(NamedTuple):
    inner: Any  # the env's state
    obs: tuple  # the env's last observations (all agents), what the fixed agents act on next
    avail: tuple
    done: jax.Array  # whether the last step ended an episode (a recurrent frozen policy starts afresh)
    carry: Any  # the frozen policy's recurrent state, batch axis of 1 (() for feed-forward policies)
    ret: jax.Array  # the fixed agents' return so far in this episode


@dataclasses.dataclass(frozen=True, eq=False)
class FixedAgentsEnv(MultiAgentEnv):
    """A JAX-native env whose fixed agents act by a frozen policy inside ``step`` (see the module docstring)."""

    inner: Any
    actor: Any

    @property
    def layout(self) -> Layout:
        return self.actor.layout

    @property
    def groups(self):
        return self.layout.groups

    @property
    def state_dim(self) -> int:
        return self.inner.state_dim

    @property
    def max_episode_steps(self) -> int:
        return self.inner.max_episode_steps

    @property
    def min_episode_steps(self) -> int:
        return self.inner.min_episode_steps

    @property
    def obs_storage(self):
        return self.inner.obs_storage

    @property
    def cooperative(self) -> bool:
        return self.inner.cooperative

    def render(self, state):
        if not callable(getattr(self.inner, "render", None)):
            raise RenderError(f"rendering is not supported for {type(self.inner).__name__} (it has no render())")
        return self.inner.render(state.inner)

    def _start(self, inner_state, ts: TimeStep):
        zero = jnp.zeros((), jnp.float32)
        state = FixedState(inner_state, ts.obs, ts.avail, jnp.zeros((), bool), self.actor.init_carry((1,)), zero)
        return state, self.layout.timestep(ts, zero, 0)

    def _reset(self, key):
        return self._start(*self.inner.reset(key))

    def _advance(self, key, state: FixedState, actions: tuple, inner_step):
        k_env, k_fixed = jax.random.split(key)
        one = lambda xs: tuple(jnp.asarray(x)[None] for x in xs)  # noqa: E731 (a batch axis of 1)
        fixed, carry = self.actor(state.carry, one(state.obs), one(state.avail), state.done[None], k_fixed)
        inner_actions = self.layout.actions(actions, jax.tree.map(lambda x: x[0], fixed), 0)
        inner_state, ts = inner_step(k_env, state.inner, inner_actions)
        ret = state.ret + self.layout.fixed_reward(ts.reward, 0)
        done = ts.done
        state = FixedState(inner_state, ts.obs, ts.avail, done, carry, jnp.where(done, 0.0, ret))
        return state, self.layout.timestep(ts, ret, 0)

    def step(self, key, state, actions):
        return strong_types(self._advance(key, state, actions, self.inner.step))  # the env resets itself

    def _step(self, key, state, actions):
        return self._advance(key, state, actions, lambda k, s, a: strong_types(self.inner._step(k, s, a)))


# ---- host environments ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class FixedHostInfo(GroupedAgents):
    """A host env's description (groups, state width, episode limit) seen by the learner; the backends
    wrap its vec envs with :meth:`wrap_vec`."""

    inner: Any
    actor: Any

    @property
    def groups(self):
        return self.actor.layout.groups

    info_keys = (INFO_KEY,)  # env outcomes of its TimeSteps (placeholders need them)

    def __getattr__(self, name: str):  # name, state_dim, max_episode_steps, obs_storage
        if name.startswith("__") or name in ("inner", "actor"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def wrap_vec(self, vec, seed: int | None = 0) -> FixedAgentsVecEnv:
        return FixedAgentsVecEnv(vec, self.actor, seed)


class FixedAgentsVecEnv:
    """A :class:`~trustmarl.envs.host.HostVecEnv` whose fixed agents act by a frozen policy (all copies in one
    jitted call); the learner's ``TimeStep`` batches (numpy, leading copy axis) as the vec env's."""

    def __init__(self, vec, actor: FrozenActor, seed: int | None = 0):
        self.vec, self.actor, self.layout = vec, actor, actor.layout
        self.num_envs, self.groups, self.state_dim = vec.num_envs, self.layout.groups, vec.state_dim
        self._act = jax.jit(actor.__call__)
        self._seed = 0 if seed is None else int(seed)

    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._seed = int(seed)
        self._key, self._t = jax.random.PRNGKey(self._seed), 0
        ts = self.vec.reset(seed)
        self._carry = self.actor.init_carry((self.num_envs,))
        self._ret = np.zeros(self.num_envs, np.float32)
        self._last = ts
        return self.layout.timestep(ts, self._ret.copy(), 1)

    def step(self, actions: tuple) -> TimeStep:
        last = self._last
        done = np.asarray(last.terminated) | np.asarray(last.truncated)
        self._t += 1
        fixed, self._carry = self._act(self._carry, last.obs, last.avail, done, jax.random.fold_in(self._key, self._t))
        fixed = jax.device_get(fixed)
        ts = self.vec.step(self.layout.actions(actions, fixed, 1, np))
        ret = (self._ret + self.layout.fixed_reward(np.asarray(ts.reward, np.float32), 1)).astype(np.float32)
        done = np.asarray(ts.terminated) | np.asarray(ts.truncated)
        self._ret = np.where(done, 0.0, ret).astype(np.float32)
        self._last = ts
        return self.layout.timestep(ts, ret, 1)

    def close(self) -> None:
        self.vec.close()

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("vec", "actor", "layout"):
            raise AttributeError(name)
        return getattr(self.vec, name)


def unwrapped(env):
    """The env with every agent: ``env`` itself unless it is wrapped for fixed agents."""
    return env.inner if isinstance(env, (FixedAgentsEnv, FixedHostInfo)) else env
