"""Environment checker: tells a user, in plain words, what their custom environment gets wrong.

``check_env(env_or_import_path)`` accepts

- a JAX-native :class:`~trustmarl.envs.base.MultiAgentEnv` instance or class (a class is built with its
  defaults), or an import path ``"module:attr"`` to one of those (or to a function returning one);
- a PettingZoo Parallel API env instance, or an import path to a factory returning one (e.g.
  ``"mpe2.simple_spread_v3:parallel_env"``).

It returns a list of violations (empty when everything is fine); ``assert_env_ok`` raises
``AssertionError`` listing all of them; ``main_check_env(argv)`` is the ``trustmarl check-env`` command.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep

MAX_EPISODE_STEPS = 10_000  # an episode of a JAX-native env must end within this many random steps
PZ_STEPS = 200  # steps checked on a PettingZoo env


# --- loading ----------------------------------------------------------------------------------------


def _load(target: Any) -> Any:
    """Resolve an import path and build classes/factories into an environment object."""
    if isinstance(target, str):
        from trustmarl.envs.host.pettingzoo_adapter import import_attr

        target = import_attr(target[len("pettingzoo:"):] if target.startswith("pettingzoo:") else target)
    if inspect.isclass(target) and issubclass(target, MultiAgentEnv):
        return target()
    if isinstance(target, MultiAgentEnv) or _is_parallel_env(target):
        return target
    if callable(target):
        return target()
    return target


def _is_parallel_env(obj: Any) -> bool:
    return all(hasattr(obj, n) for n in ("possible_agents", "reset", "step", "observation_space", "action_space"))


def check_env(env_or_import_path: Any, seed: int = 0) -> list[str]:
    """Violations of the environment contract, in plain words (empty when the env is fine)."""
    try:
        env = _load(env_or_import_path)
    except Exception as err:  # noqa: BLE001 - the user wants to know why loading failed
        return [f"could not load/build the environment: {type(err).__name__}: {err}"]
    if isinstance(env, MultiAgentEnv):
        return check_jax_env(env, seed)
    if _is_parallel_env(env):
        return check_pettingzoo_env(env, seed)
    return [
        f"{type(env).__name__} is neither a trustmarl MultiAgentEnv nor a PettingZoo Parallel API env "
        "(needs possible_agents, reset, step, observation_space, action_space)"
    ]


def assert_env_ok(env_or_import_path: Any, seed: int = 0) -> None:
    """Raise ``AssertionError`` listing every violation found by :func:`check_env`."""
    problems = check_env(env_or_import_path, seed)
    if problems:
        raise AssertionError("environment check failed:\n" + "\n".join(f"- {p}" for p in problems))


# --- JAX-native environments ------------------------------------------------------------------------


def _check_groups(env: MultiAgentEnv) -> list[str]:
    out: list[str] = []
    try:
        groups = env.groups
    except Exception as err:  # noqa: BLE001
        return [f"env.groups raised {type(err).__name__}: {err}"]
    if not isinstance(groups, tuple) or not groups:
        return [f"env.groups must be a non-empty tuple of AgentGroup, got {groups!r}"]
    names, agents = set(), []
    for g in groups:
        if not isinstance(g, AgentGroup):
            out.append(f"env.groups contains {g!r}, which is not an AgentGroup")
            continue
        if g.name in names:
            out.append(f"group name {g.name!r} is used twice")
        names.add(g.name)
        if g.n < 1:
            out.append(f"group {g.name!r} has no agents")
        agents.extend(g.agents)
        if not isinstance(g.obs_dim, (int, np.integer)) or g.obs_dim < 1:
            out.append(f"group {g.name!r} has obs_dim {g.obs_dim!r}; it must be a positive integer")
        sp = g.action_space
        if isinstance(sp, Discrete):
            if not isinstance(sp.n, (int, np.integer)) or sp.n < 1:
                out.append(f"group {g.name!r} has Discrete({sp.n!r}); n must be a positive integer")
        elif isinstance(sp, Box):
            if not isinstance(sp.dim, (int, np.integer)) or sp.dim < 1:
                out.append(f"group {g.name!r} has Box dim {sp.dim!r}; it must be a positive integer")
            if not sp.low < sp.high:
                out.append(f"group {g.name!r} has Box bounds low={sp.low} >= high={sp.high}")
        else:
            out.append(f"group {g.name!r} has action space {sp!r}; use trustmarl Discrete or Box")
    if len(set(agents)) != len(agents):
        out.append(f"agent names are not unique across groups: {agents}")
    try:
        sd = env.state_dim
        if not isinstance(sd, (int, np.integer)) or sd < 1:
            out.append(f"env.state_dim is {sd!r}; it must be a positive integer")
    except Exception as err:  # noqa: BLE001
        out.append(f"env.state_dim raised {type(err).__name__}: {err}")
    return out


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x)


def _check_timestep(env: MultiAgentEnv, ts: Any, where: str) -> list[str]:
    """Shapes, dtypes, masks and finiteness of one TimeStep."""
    if not isinstance(ts, TimeStep):
        return [f"{where} must return (state, TimeStep), got a {type(ts).__name__} as the TimeStep"]
    out: list[str] = []
    groups = env.groups
    for field in ("obs", "avail", "final_obs"):
        val = getattr(ts, field)
        if not isinstance(val, tuple) or len(val) != len(groups):
            out.append(f"{where}: TimeStep.{field} must be a tuple with one array per group ({len(groups)})")
            return out
    for g, o, av, fo in zip(groups, ts.obs, ts.avail, ts.final_obs):
        for name, x in (("obs", o), ("final_obs", fo)):
            x = _arr(x)
            if x.shape != (g.n, g.obs_dim):
                out.append(f"{where}: {name} of group {g.name!r} has shape {x.shape}, expected {(g.n, g.obs_dim)}")
            if not np.issubdtype(x.dtype, np.floating):
                out.append(f"{where}: {name} of group {g.name!r} has dtype {x.dtype}, expected a float dtype (float32)")
            elif not np.all(np.isfinite(x)):
                out.append(f"{where}: {name} of group {g.name!r} contains NaN or inf")
        av = _arr(av)
        if av.shape != (g.n, g.avail_dim):
            out.append(f"{where}: avail of group {g.name!r} has shape {av.shape}, expected {(g.n, g.avail_dim)}")
        elif av.dtype != np.bool_:
            out.append(f"{where}: avail of group {g.name!r} has dtype {av.dtype}, expected bool")
        elif g.avail_dim > 0 and not np.all(av.any(axis=-1)):
            bad = [g.agents[i] for i in np.flatnonzero(~av.any(axis=-1))]
            out.append(f"{where}: agents {bad} of group {g.name!r} have no available action")
    for name in ("state", "final_state"):
        x = _arr(getattr(ts, name))
        if x.shape != (env.state_dim,):
            out.append(f"{where}: {name} has shape {x.shape}, expected ({env.state_dim},) = (state_dim,)")
        elif not np.issubdtype(x.dtype, np.floating):
            out.append(f"{where}: {name} has dtype {x.dtype}, expected a float dtype")
        elif not np.all(np.isfinite(x)):
            out.append(f"{where}: {name} contains NaN or inf")
    r = _arr(ts.reward)
    if r.shape != (env.n_agents,):
        out.append(f"{where}: reward has shape {r.shape}, expected ({env.n_agents},) = [n_agents] (repeat a team reward)")
    elif not np.issubdtype(r.dtype, np.floating):
        out.append(f"{where}: reward has dtype {r.dtype}, expected float")
    elif not np.all(np.isfinite(r)):
        out.append(f"{where}: reward contains NaN or inf")
    for name in ("terminated", "truncated"):
        x = _arr(getattr(ts, name))
        if x.shape != () or x.dtype != np.bool_:
            out.append(f"{where}: {name} must be a scalar bool, got shape {x.shape} dtype {x.dtype}")
    a = _arr(ts.active)
    if a.shape != (env.n_agents,) or a.dtype != np.bool_:
        out.append(f"{where}: active must be bool [n_agents]=({env.n_agents},), got shape {a.shape} dtype {a.dtype}")
    if not isinstance(ts.info, dict):
        out.append(f"{where}: info must be a dict of per-episode outcomes, got {type(ts.info).__name__}")
    else:
        for k, v in ts.info.items():
            x = _arr(v)
            if x.shape != () or not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x):
                out.append(f"{where}: info[{k!r}] must be a finite scalar float, got shape {x.shape} dtype {x.dtype}")
    return out


def _same(a: Any, b: Any) -> bool:
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(_arr(x), _arr(y), equal_nan=True) for x, y in zip(la, lb))


def _signature_problems(env: MultiAgentEnv) -> list[str]:
    out = []
    for name, n_args in (("reset", 1), ("step", 3)):
        try:
            sig = inspect.signature(getattr(env, name))
            sig.bind(*([None] * n_args))
        except (TypeError, ValueError) as err:
            out.append(f"env.{name} must be callable as {name}({'key' if n_args == 1 else 'key, state, actions'}): {err}")
    return out


def check_jax_env(env: MultiAgentEnv, seed: int = 0, max_episode_steps: int = MAX_EPISODE_STEPS) -> list[str]:
    """Violations of the JAX-native contract (see the module docstring)."""
    import jax

    out = _check_groups(env) + _signature_problems(env)
    if out:
        return out
    key = jax.random.PRNGKey(seed)
    k_reset, k_act, k_step = jax.random.split(key, 3)
    try:
        state, ts = env.reset(k_reset)
    except Exception as err:  # noqa: BLE001
        return [f"reset(key) raised {type(err).__name__}: {err}"]
    out += _check_timestep(env, ts, "reset")
    if out:
        return out
    try:
        actions = env.random_actions(k_act, ts.avail)
        state2, ts2 = env.step(k_step, state, actions)
    except Exception as err:  # noqa: BLE001
        return out + [f"step(key, state, actions) raised {type(err).__name__}: {err}"]
    out += _check_timestep(env, ts2, "step")
    if isinstance(ts.info, dict) and isinstance(ts2.info, dict) and set(ts.info) != set(ts2.info):
        out.append(f"info keys differ: reset gives {sorted(ts.info)}, step gives {sorted(ts2.info)} (they must be the same)")
    # determinism: same key, same outputs (eager, so host-side randomness is caught too)
    if not _same(env.reset(k_reset), (state, ts)):
        out.append("reset is not deterministic: two resets with the same key gave different outputs")
    if not _same(env.step(k_step, state, actions), (state2, ts2)):
        out.append("step is not deterministic: two steps with the same key, state and actions differ")
    # jit-ability and agreement with the eager functions
    try:
        j_state, j_ts = jax.jit(env.reset)(k_reset)
        j_out = jax.jit(env.step)(k_step, j_state, actions)
        if not _same(jax.tree.map(np.shape, (j_state, j_ts)), jax.tree.map(np.shape, (state, ts))):
            out.append("jax.jit(reset) returns different shapes than reset")
        if not _same(jax.tree.map(np.shape, j_out), jax.tree.map(np.shape, (state2, ts2))):
            out.append("jax.jit(step) returns different shapes than step")
    except Exception as err:  # noqa: BLE001
        return out + [f"reset/step cannot be jitted: {type(err).__name__}: {str(err).splitlines()[0]}"]
    if not out:
        out += _check_episode_ends(env, k_step, max_episode_steps)
    return out


def _check_episode_ends(env: MultiAgentEnv, key: Any, bound: int) -> list[str]:
    """An episode under random actions must end within ``bound`` steps."""
    import jax

    def body(carry, k):
        state, ts, ended = carry
        k_act, k_step = jax.random.split(k)
        state, ts = env.step(k_step, state, env.random_actions(k_act, ts.avail))
        return (state, ts, ended | ts.done), None

    @jax.jit
    def run(key):
        k0, ks = jax.random.split(key)
        state, ts = env.reset(k0)
        (_, _, ended), _ = jax.lax.scan(body, (state, ts, jax.numpy.asarray(False)), jax.random.split(ks, bound))
        return ended

    try:
        if not bool(run(key)):
            return [f"no episode ended within {bound} steps of random actions (add a time limit: truncated=True)"]
    except Exception as err:  # noqa: BLE001
        return [f"running an episode under jit failed: {type(err).__name__}: {str(err).splitlines()[0]}"]
    return []


# --- PettingZoo Parallel API environments -----------------------------------------------------------


def _pz_obs_problems(env: Any, obs: dict, where: str) -> list[str]:
    out = []
    for agent, o in obs.items():
        space = env.observation_space(agent)
        if isinstance(o, dict) and "observation" in o and hasattr(space, "spaces"):
            o, space = o["observation"], space.spaces["observation"]
        arr = np.asarray(o)
        if space.dtype is not None and arr.dtype != space.dtype:
            out.append(f"{where}: observation of {agent!r} has dtype {arr.dtype}, its space says {space.dtype}")
        elif space.shape is not None and arr.shape != space.shape:
            out.append(f"{where}: observation of {agent!r} has shape {arr.shape}, its space says {space.shape}")
        elif np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            out.append(f"{where}: observation of {agent!r} contains NaN or inf")
        elif not space.contains(o):
            out.append(f"{where}: observation of {agent!r} is outside its observation_space {space}")
    return out


def _pz_mask(raw_obs: Any, info: Any) -> Any:
    if isinstance(raw_obs, dict) and "action_mask" in raw_obs:
        return raw_obs["action_mask"]
    if isinstance(info, dict) and "action_mask" in info:
        return info["action_mask"]
    return None


def _pz_mask_problems(env: Any, obs: dict, infos: dict, where: str) -> list[str]:
    out = []
    for agent, o in obs.items():
        mask = _pz_mask(o, (infos or {}).get(agent))
        if mask is None:
            continue
        space = env.action_space(agent)
        mask = np.asarray(mask)
        n = getattr(space, "n", None)
        if n is None:
            out.append(f"{where}: {agent!r} has an action_mask but a non-discrete action space {space}")
        elif mask.shape != (n,):
            out.append(f"{where}: action_mask of {agent!r} has shape {mask.shape}, expected ({n},)")
        elif not np.isin(mask, (0, 1)).all():
            out.append(f"{where}: action_mask of {agent!r} must contain only 0/1 or bool values")
        elif not mask.any():
            out.append(f"{where}: action_mask of {agent!r} allows no action")
    return out


def _pz_random_actions(env: Any, obs: dict, infos: dict, rng: np.random.Generator) -> dict:
    actions = {}
    for agent in env.agents:
        space = env.action_space(agent)
        mask = _pz_mask(obs.get(agent), (infos or {}).get(agent))
        if hasattr(space, "n"):
            choices = np.flatnonzero(np.asarray(mask)) if mask is not None and np.asarray(mask).any() else np.arange(space.n)
            actions[agent] = int(space.start) + int(rng.choice(choices))
        else:
            low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
            low, high = np.where(np.isfinite(low), low, -1.0), np.where(np.isfinite(high), high, 1.0)
            actions[agent] = rng.uniform(low, high).astype(space.dtype)
    return actions


def check_pettingzoo_env(env: Any, seed: int = 0, steps: int = PZ_STEPS) -> list[str]:
    """Violations of the PettingZoo Parallel API as trustmarl uses it (see the module docstring)."""
    out: list[str] = []
    possible = list(getattr(env, "possible_agents", []) or [])
    if not possible:
        return ["env.possible_agents is empty or missing"]
    for agent in possible:
        for kind in ("observation_space", "action_space"):
            try:
                space = getattr(env, kind)(agent)
                if not hasattr(space, "contains"):
                    out.append(f"{kind}({agent!r}) is {space!r}, not a gymnasium space")
            except Exception as err:  # noqa: BLE001
                out.append(f"{kind}({agent!r}) is not defined: {type(err).__name__}: {err}")
    if out:
        return out
    try:
        from trustmarl.envs.host.pettingzoo_adapter import group_agents

        group_agents({a: env.observation_space(a) for a in possible}, {a: env.action_space(a) for a in possible}, possible)
    except ValueError as err:
        out.append(f"trustmarl cannot group the agents: {err}")
    try:
        result = env.reset(seed=seed)
    except Exception as err:  # noqa: BLE001
        return out + [f"reset(seed=...) raised {type(err).__name__}: {err}"]
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(x, dict) for x in result)):
        return out + ["reset(seed=...) must return a tuple (observations: dict, infos: dict)"]
    obs, infos = result
    first = {a: np.array(o, copy=True) if not isinstance(o, dict) else o for a, o in obs.items()}
    if set(obs) != set(env.agents):
        out.append(f"reset: observation keys {sorted(obs)} differ from env.agents {sorted(env.agents)}")
    if set(infos) != set(obs):
        out.append(f"reset: info keys {sorted(infos)} differ from observation keys {sorted(obs)}")
    out += _pz_obs_problems(env, obs, "reset") + _pz_mask_problems(env, obs, infos, "reset")
    # determinism under a seed
    obs_again, _ = env.reset(seed=seed)
    if set(obs_again) != set(first) or not all(_pz_equal(first[a], obs_again[a]) for a in first):
        out.append("reset is not deterministic: reset(seed=s) twice gave different observations")
    rng = np.random.default_rng(seed)
    obs, infos = obs_again, infos
    for t in range(steps):
        live = list(env.agents)
        try:
            step_out = env.step(_pz_random_actions(env, obs, infos, rng))
        except Exception as err:  # noqa: BLE001
            return out + [f"step {t} raised {type(err).__name__}: {err}"]
        if not (isinstance(step_out, tuple) and len(step_out) == 5 and all(isinstance(x, dict) for x in step_out)):
            return out + ["step must return 5 dicts (observations, rewards, terminations, truncations, infos)"]
        obs, rewards, terms, truncs, infos = step_out
        for name, d in (("observation", obs), ("reward", rewards), ("termination", terms), ("truncation", truncs), ("info", infos)):
            missing = [a for a in live if a not in d]
            if missing:
                out.append(f"step {t}: {name} dict is missing agents {missing} that acted in this step")
        for agent, r in rewards.items():
            if not np.isfinite(np.asarray(r, dtype=np.float64)).all():
                out.append(f"step {t}: reward of {agent!r} is not finite ({r})")
        out += _pz_obs_problems(env, obs, f"step {t}") + _pz_mask_problems(env, obs, infos, f"step {t}")
        if out or not env.agents:
            break
    return _dedupe(out)


def _pz_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_pz_equal(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- command line -----------------------------------------------------------------------------------


def report(name: str, problems: list[str], print_fn: Callable[[str], Any] = print) -> int:
    """Print the checker's findings for ``name``; 0 when there are none, else 1."""
    if not problems:
        print_fn(f"{name}: OK, no contract violations found")
        return 0
    print_fn(f"{name}: {len(problems)} problem(s) found:")
    for p in problems:
        print_fn(f"  - {p}")
    return 1


def main_check_env(argv: Sequence[str] | None = None, print_fn: Callable[[str], Any] = print) -> int:
    """``check-env IMPORT_PATH [--seed S]`` on an import path: print the report, return 0 (ok) or 1.

    ``trustmarl check-env`` (the CLI) accepts every environment name ``train`` accepts; this entry point
    takes import paths only."""
    parser = argparse.ArgumentParser(
        prog="trustmarl check-env",
        description="Check a custom environment against trustmarl's contract. IMPORT_PATH is 'module:attr' "
        "naming a MultiAgentEnv class/instance or a PettingZoo parallel_env factory.",
    )
    parser.add_argument("import_path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return report(args.import_path, check_env(args.import_path, seed=args.seed), print_fn)
