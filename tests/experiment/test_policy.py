"""``trustmarl.load_policy``: a trained policy in one call, acting on the environment's own observations.

Tiny runs of an on-policy (MAPPO) and an off-policy (MADDPG) algorithm, both recurrent (the policy carries a
hidden state), on a JAX-native env (mpe/simple_spread) and a PettingZoo env (pettingzoo/simple_spread,
mpe2): the policy's actions equal the run's own deterministic evaluation actions (``run_episodes``,
what ``trustmarl eval`` plays) step by step on the same observations, and action masks are respected."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from jaxcache import compilation_cache

import trustmarl
from trustmarl.algos import algo_config_class
from trustmarl.algos.evaluation import JaxStepper, RenderStepper, run_episodes
from trustmarl.envs.host import registry as host_registry
from trustmarl.experiment.config import ConfigError, build_config
from trustmarl.experiment.runner import load_run_state, train

TINY = {"algo.num_envs": 2, "algo.rollout_len": 4, "algo.hidden_sizes": [8], "algo.epochs": 1, "algo.minibatches": 1,
        "algo.recurrent": True, "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 1,
        "algo.seq_len": 4}  # recurrent MADDPG learns from windows of 4 steps (episodes of 5)
ENV = {"env.n_agents": 2, "env.max_cycles": 5}
# Each family on one kind of env by default (an on-policy run on the JAX-native env, an off-policy one on the
# PettingZoo env); the crossed pairs run in the slow suite (the default suite's 20-minute budget).
DEFAULT = [("mappo", "mpe/simple_spread"), ("maddpg", "pettingzoo/simple_spread")]
CROSSED = [("mappo", "pettingzoo/simple_spread"), ("maddpg", "mpe/simple_spread")]
CASES = DEFAULT + [pytest.param(*c, marks=pytest.mark.slow) for c in CROSSED]


def _overrides(algo: str) -> dict:
    fields = {f.name for f in dataclasses.fields(algo_config_class(algo))}
    return {**{k: v for k, v in TINY.items() if k[5:] in fields}, **ENV, "total_steps": 40, "eval_every": 0}


def _dir(algo: str, env: str) -> str:
    return f"{algo}_{env.replace('/', '_')}"


class Runs:
    """The tiny runs, each trained on first use (a deselected case costs nothing)."""

    def __init__(self, root):
        self.root = root

    def __truediv__(self, name: str):
        path = self.root / name
        if not path.exists():
            algo, env = next((a, e) for a, e in DEFAULT + CROSSED if _dir(a, e) == name)
            train(build_config(algo, env, _overrides(algo)), path, progress=False, tensorboard=False)
        return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    with compilation_cache(root / "cache"):
        yield Runs(root)


class Recording:
    """A stepper that records what the evaluation loop saw and did."""

    def __init__(self, inner):
        self.inner, self.shape, self.seen, self.actions = inner, inner.shape, [], []

    def reset(self):
        self.seen.append(self.inner.reset())
        return self.seen[-1]

    def step(self, actions):
        self.actions.append([np.asarray(a)[0, 0] for a in jax.device_get(actions)])
        self.seen.append(self.inner.step(actions))
        return self.seen[-1]


class RawRecording:
    """A PettingZoo Parallel env that records its raw observation and info dicts."""

    def __init__(self, env):
        self.env, self.raw = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, *args, **kwargs):
        obs, infos = self.env.reset(*args, **kwargs)
        self.raw.append((obs, infos))
        return obs, infos

    def step(self, actions):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        self.raw.append((obs, infos))
        return obs, rewards, terms, truncs, infos


def _evaluation(run_dir, env_name):
    """The run's deterministic evaluation of one episode (seed 0), recorded."""
    cfg, algo, state, _ = load_run_state(run_dir, policy_only=True)
    views = jax.tree.map(lambda x: x[:1], jax.vmap(algo.policy_view)(state))
    if env_name.startswith("pettingzoo/"):
        raw = RawRecording(host_registry.make_factory(env_name, cfg.env.params)())
        rec = Recording(RenderStepper(raw, seed=3))
    else:
        raw, rec = None, Recording(JaxStepper(algo.env, 1, 1, jax.random.PRNGKey(3)))
    run_episodes(algo, views, rec, jax.random.PRNGKey(4), deterministic=True)
    return algo, rec, raw


@pytest.mark.parametrize("algo,env", CASES)
def test_policy_acts_as_the_runs_own_evaluation(runs, algo, env):
    policy = trustmarl.load_policy(runs / _dir(algo, env), seed=0)
    algorithm, rec, raw = _evaluation(runs / _dir(algo, env), env)
    assert len(rec.actions) == 5  # one 5-step episode
    if algo == "mappo":
        assert jax.tree.leaves(policy.carry)  # a recurrent policy: a hidden state is carried
    policy.reset()
    for t, expected in enumerate(rec.actions):
        if raw is None:  # JAX-native: per-group arrays (the TimeStep's), per-group actions
            ts = rec.seen[t]
            got = policy.act(tuple(o[0, 0] for o in ts.obs), avail=tuple(a[0, 0] for a in ts.avail))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected)), t
        else:  # PettingZoo: the env's own dicts
            obs, infos = raw.raw[t]
            got = policy.act(obs, infos=infos)
            want = {name: int(expected[g][i]) for g, names in enumerate(policy.agents) for i, name in enumerate(names)}
            assert got == want, t


@pytest.mark.parametrize("algo,env", DEFAULT)
def test_policy_respects_action_masks(runs, algo, env):
    policy = trustmarl.load_policy(runs / _dir(algo, env), seed=0)
    if env.startswith("pettingzoo/"):
        obs, _ = host_registry.make_factory(env, dict(n_agents=2, max_cycles=5))().reset(seed=0)
        first = policy.act(obs)
        policy.reset()
        avail = {name: np.arange(5) != a for name, a in first.items()}  # the first choice is not available
        again = policy.act(obs, avail=avail)
        assert all(again[n] != first[n] for n in first)
        return
    env_obj = trustmarl.make_env(env, n_agents=2, max_cycles=5)
    _, ts = env_obj.reset(jax.random.PRNGKey(0))
    first = policy.act(ts)
    policy.reset()
    avail = tuple(np.arange(5)[None, :] != np.asarray(a)[:, None] for a in first)
    again = policy.act(ts.obs, avail=avail)
    assert all((np.asarray(b) != np.asarray(a)).all() for a, b in zip(first, again))


def test_load_policy_names_a_bad_seed(runs):
    with pytest.raises(ConfigError, match="seed=1 must be an integer in 0..0"):
        trustmarl.load_policy(runs / _dir("maddpg", "pettingzoo/simple_spread"), seed=1)
