"""Agents with a fixed policy (run keys ``fixed_agents`` / ``fixed_policy``) on a JAX-native env and a host env.

The fixed agents' actions equal ``trustmarl.load_policy``'s on the same observations (the env's state after a
wrapped step equals the unwrapped env stepped with those actions, bitwise); the learners' returns and
metrics exclude the fixed agents, whose return is logged apart as ``fixed_return``; ``random`` is uniform
over the available actions; a policy that does not fit is refused; bad input is one line and exit 2.
Tiny IPPO runs (one update each) give the frozen policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jaxcache import compilation_cache

import trustmarl
from trustmarl.envs.base import AgentGroup, Discrete
from trustmarl.experiment import cli, runner
from trustmarl.experiment.backends import env_info
from trustmarl.experiment.config import ConfigError, build_config
from trustmarl.experiment.fixed import FixedAgentsEnv, FixedAgentsVecEnv, FrozenActor, Layout
from trustmarl.experiment.logger import read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))  # toy_envs (GuessEnv)

GUESS = "pettingzoo:toy_envs:guess_env"
TINY = {"algo.num_envs": 2, "algo.rollout_len": 4, "algo.hidden_sizes": [8], "algo.epochs": 1, "algo.minibatches": 1,
        "total_steps": 8, "eval_every": 0}
SPREAD = {"env.n_agents": 3, "env.max_cycles": 5}
# agent 0 always gets 1, agent 1 always gets 5: the learner's return is exactly 1, the fixed agent's 5
CONSTANT = {"env.payoffs": [[[1, 1], [1, 1]], [[5, 5], [5, 5]]]}
GUESS_FIXED = {"env.num_workers": 0, "fixed_agents": ["guesser_1"], "algo.rollout_len": 10, "algo.num_envs": 4,
               "total_steps": 40}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    with compilation_cache(root / "cache"):
        # guess: guesser_0 learns against a random guesser_1 (its policy then acts for guesser_0 only)
        for name, env, ov in (("spread", "mpe/simple_spread", SPREAD), ("guess", GUESS, GUESS_FIXED)):
            runner.train(build_config("ippo", env, {**TINY, **ov}), root / name, progress=False, tensorboard=False)
        yield root


def _step_both(env: FixedAgentsEnv, state, learner_actions, policy, fixed, key):
    """The wrapped step, and the unwrapped env stepped with the learner's actions and ``policy``'s for ``fixed``."""
    expected = policy.act(state.obs, avail=state.avail)  # every agent's action, per group
    names = env.inner.groups[0].agents
    inner_actions = (np.array([expected[0][i] if a in fixed else learner_actions[0][env.groups[0].agents.index(a)]
                               for i, a in enumerate(names)], np.int32),)
    k_env, _ = jax.random.split(key)
    want_state, want_ts = env.inner.step(k_env, state.inner, inner_actions)
    got_state, got_ts = env.step(key, state, learner_actions)
    return got_state, got_ts, want_state, want_ts


def test_fixed_agents_act_by_the_loaded_policy_jax(runs):
    fixed = ("agent_0", "agent_2")
    cfg = build_config("ippo", "mpe/simple_spread", {**TINY, **SPREAD, "fixed_agents": list(fixed),
                                                      "fixed_policy": str(runs / "spread"), "fixed_deterministic": True})
    env = env_info(cfg)
    assert isinstance(env, FixedAgentsEnv) and env.agents == ("agent_1",) and env.n_agents == 1
    policy = trustmarl.load_policy(runs / "spread")
    state, ts = env.reset(jax.random.PRNGKey(0))
    ret = 0.0
    for t in range(4):
        key = jax.random.PRNGKey(10 + t)
        learner = (np.array([t % 5], np.int32),)
        state_next, ts, want_state, want_ts = _step_both(env, state, learner, policy, fixed, key)
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state_next.inner, want_state)
        np.testing.assert_array_equal(ts.reward, np.asarray(want_ts.reward)[[1]])  # the learner's reward only
        np.testing.assert_array_equal(ts.obs[0], np.asarray(want_ts.obs[0])[[1]])
        ret += float(np.asarray(want_ts.reward)[[0, 2]].mean())
        np.testing.assert_allclose(float(ts.info["fixed_return"]), ret, rtol=1e-6)
        state = state_next


def test_fixed_agents_act_by_the_loaded_policy_host(runs):
    """guesser_0 acts by the policy of a run in which it learned against a fixed guesser_1; guesser_1 learns."""
    from trustmarl.envs.host.vector import HostVecEnv
    from toy_envs import guess_env

    cfg = build_config("ippo", GUESS, {**TINY, "env.num_workers": 0, "fixed_agents": "guesser_0",
                                       "fixed_policy": str(runs / "guess"), "fixed_deterministic": True})
    info = env_info(cfg)
    assert info.agents == ("guesser_1",) and info.info_keys == ("fixed_return",)
    sent = []

    class Recording(HostVecEnv):
        def step(self, actions):
            sent.append([np.asarray(a).copy() for a in actions])
            return super().step(actions)

    vec = info.wrap_vec(Recording([guess_env] * 3, num_workers=0, seed=5), seed=5)
    assert isinstance(vec, FixedAgentsVecEnv) and vec.groups == info.groups
    policy = trustmarl.load_policy(runs / "guess")
    assert policy.agents == (("guesser_0",),) and policy.fixed_agents == ("guesser_1",)
    try:
        vec.reset(5)
        for t in range(6):
            last = vec._last  # the env's observations of both agents, what the fixed one acts on
            ts = vec.step((np.full((3, 1), t % 3, np.int32),))
            for c in range(3):
                raw = {a: last.obs[0][c, i] for i, a in enumerate(("guesser_0", "guesser_1"))}
                assert sent[-1][0][c, 0] == policy.act(raw)["guesser_0"] and sent[-1][0][c, 1] == t % 3
            np.testing.assert_array_equal(ts.reward, np.asarray(vec._last.reward)[:, [1]])
            np.testing.assert_array_equal(ts.obs[0], np.asarray(vec._last.obs[0])[:, [1]])
    finally:
        vec.close()
    assert len({int(a[0][c, 0]) for a in sent for c in range(3)}) > 1  # the policy's action depends on the observation


def test_the_fixed_return_restarts_with_each_episode_host():
    from trustmarl.envs.host.vector import HostVecEnv
    from toy_envs import guess_env

    info = env_info(build_config("ippo", GUESS, {**TINY, "env.num_workers": 0, "fixed_agents": "guesser_0"}))
    vec = info.wrap_vec(HostVecEnv([guess_env] * 3, num_workers=0, seed=2), seed=2)
    ret, ended = np.zeros(3), []  # random guesser_0's return so far in each copy's 5-step episode
    try:
        vec.reset(2)
        for t in range(8):
            ts = vec.step((np.zeros((3, 1), np.int32),))
            ret += np.asarray(vec._last.reward)[:, 0]
            np.testing.assert_allclose(ts.info["fixed_return"], ret, rtol=1e-6)
            done = np.asarray(vec._last.terminated) | np.asarray(vec._last.truncated)
            ended += list(ret[done])
            ret[done] = 0.0
    finally:
        vec.close()
    assert len(ended) == 3 and max(ended) > 0 and ret.any()  # an episode ended with a return, the next one goes on


def test_learners_returns_exclude_the_fixed_agents(runs, tmp_path):
    cfg = build_config("ippo", "matrix/general_sum", {**TINY, **CONSTANT, "fixed_agents": ["agent_1"], "eval_every": 8})
    summary = runner.train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert summary["final_return"] == 1.0 and summary["final_return_per_agent"] == [1.0]
    assert summary["final_fixed_return"] == 5.0 and summary["final_eval_fixed_return"] == 5.0
    assert summary["final_eval_return"] == 1.0
    row = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert row["episode_return"] == 1.0 and row["episode_fixed_return"] == 5.0
    assert not any(k.endswith("agent_1") for k in row)  # the fixed agent is no learner
    # this run's policy acts for agent_0 only: it cannot be agent_1's fixed policy
    with pytest.raises(ConfigError, match=r"has no policy for agent\(s\) \['agent_1'\]; its agents: agent_0$"):
        env_info(build_config("ippo", "matrix/general_sum", {**TINY, **CONSTANT, "fixed_agents": ["agent_1"],
                                                              "fixed_policy": str(tmp_path / "run")}))


def test_learners_returns_exclude_the_fixed_agents_host(runs):
    rows = read_jsonl(runs / "guess" / "metrics.jsonl")
    summary = json.loads((runs / "guess" / "summary.json").read_text())
    assert not any(k.endswith("agent_1") for r in rows for k in r)  # guesser_1 is no learner
    assert summary["final_return_per_agent"] == [summary["final_return"]]
    # GuessEnv rewards each agent for its own guess: guesser_1's return (random, ~5/3) is apart from guesser_0's
    assert all(0 <= r["episode_fixed_return"] <= 5 for r in rows) and "final_fixed_return" in summary


def test_random_is_uniform_over_available_actions():
    groups = (AgentGroup("a", ("a_0", "a_1", "a_2"), 2, Discrete(4)),)
    actor = FrozenActor(Layout(groups, ("a_0", "a_2")))
    b = 40_000
    avail = np.ones((b, 3, 4), bool)
    avail[:, 0, [1, 3]] = False  # a_0 may play 0 or 2; a_2 anything
    obs = (np.zeros((b, 3, 2), np.float32),)
    (acts,), _ = actor((), obs, (avail,), np.zeros(b, bool), jax.random.PRNGKey(0))
    acts = np.asarray(acts)
    assert acts.shape == (b, 2)
    f0 = np.bincount(acts[:, 0], minlength=4) / b
    f2 = np.bincount(acts[:, 1], minlength=4) / b
    np.testing.assert_array_equal(f0[[1, 3]], 0.0)
    np.testing.assert_allclose(f0[[0, 2]], 0.5, atol=0.01)
    np.testing.assert_allclose(f2, 0.25, atol=0.01)


def test_layout_puts_each_action_in_its_place():
    groups = (AgentGroup("a", ("x", "y", "z", "w"), 1, Discrete(9)), AgentGroup("b", ("v",), 1, Discrete(9)))
    lay = Layout(groups, ("y", "w", "v"))
    assert [g.agents for g in lay.groups] == [("x", "z")]
    out = lay.actions((np.array([[1, 3]]),), (np.array([[2, 4]]), np.array([[5]])), 1, np)
    np.testing.assert_array_equal(out[0], [[1, 2, 3, 4]])
    np.testing.assert_array_equal(out[1], [[5]])
    np.testing.assert_array_equal(lay.learner_global, [0, 2])
    np.testing.assert_array_equal(lay.fixed_global, [1, 3, 4])


def test_a_policy_that_does_not_fit_is_refused(runs):
    with pytest.raises(ConfigError, match="does not fit agent 'agent_1' of matrix/general_sum: the policy's observation "
                                          "width 18 and actions Discrete"):
        env_info(build_config("ippo", "matrix/general_sum", {**TINY, "fixed_agents": "agent_1",
                                                              "fixed_policy": str(runs / "spread")}))
    with pytest.raises(ConfigError, match=r"fixed_seed=1 must be in 0..0: fixed_policy='.*spread' \(ippo on "
                                          r"mpe/simple_spread\) trained 1 seed\(s\)"):
        env_info(build_config("ippo", "mpe/simple_spread", {**TINY, **SPREAD, "fixed_agents": "agent_1", "fixed_seed": 1,
                                                             "fixed_policy": str(runs / "spread")}))
    with pytest.raises(ConfigError, match="is not a checkpoint inside a run directory"):
        env_info(build_config("ippo", GUESS, {**TINY, "env.num_workers": 0, "fixed_agents": ["guesser_1"],
                                              "fixed_policy": str(runs / "spread" / "config.yaml")}))


@pytest.mark.parametrize("args,needles", [
    (["fixed_agents=agent_9"], ["matches no agent", "agent_0, agent_1, agent_2"]),
    (["fixed_agents=agent_"], ["matches every agent", "agent_0, agent_1, agent_2"]),
    (["fixed_agents=[agent_0,bob]"], ["unknown agent(s) ['bob']"]),
    (["fixed_policy=random"], ["needs fixed_agents"]),
    (["fixed_agents=agent_0", "fixed_policy=no/such/run"], ["fixed_policy='no/such/run'", "does not exist"]),
    (["fixed_agents=agent_0", "fixed_policy=."], ["is not a trustmarl run directory"]),
    (["fixed_agents=3"], ["fixed_agents=3 must be a list or a string (or null)"]),
])
def test_bad_fixed_agent_keys_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch, args, needles):
    monkeypatch.setattr("trustmarl.experiment.backends._Chunks", None)  # nothing may compile
    argv = ["train", "ippo", "mpe/simple_spread", "env.n_agents=3", *args, "--out", str(tmp_path / "r")]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1, err
    assert all(n in err for n in needles), err
    assert not (tmp_path / "r").exists()


def test_a_relative_fixed_policy_is_saved_absolute_and_resumes_from_elsewhere(runs, tmp_path, monkeypatch):
    """``fixed_policy=RELATIVE`` is resolved against the directory training starts in and saved absolute, so
    ``--resume`` from another working directory loads the same policy."""
    monkeypatch.chdir(runs)
    cfg = build_config("ippo", "mpe/simple_spread", {**TINY, **SPREAD, "total_steps": 16, "fixed_agents": ["agent_2"],
                                                      "fixed_policy": "spread"})
    runner.train(cfg, tmp_path / "run", progress=False, tensorboard=False, stop_after_chunks=1)
    assert runner.load_run_config(tmp_path / "run").fixed_policy == str((runs / "spread").resolve())
    monkeypatch.chdir(tmp_path)
    summary = runner.train(None, tmp_path / "run", resume=True, progress=False, tensorboard=False)
    assert summary["status"] == "completed" and summary["env_steps"] == 16
