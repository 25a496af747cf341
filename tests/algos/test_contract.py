"""The contract every registered algorithm meets (parametrised over ``algo_names()``: a new algorithm
is covered automatically): jit + vmap over seeds, the required metrics, evaluation, a checkpoint
round trip with a bitwise resume, and a short run on a host (PettingZoo) environment."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
from jaxcache import compilation_cache

from trustmarl.algos import algo_config_class, algo_names, algo_spec
from trustmarl.algos.base import REQUIRED_METRICS, init_seeds
from trustmarl.experiment.backends import _Chunks, build_algorithm, has_bulk, make_backend, seed_keys
from trustmarl.experiment.config import build_config
from trustmarl.experiment.logger import read_jsonl
from trustmarl.experiment.runner import evaluate_run, load_run_state, train

# The smallest settings of every family; each algorithm takes the keys it has.
TINY = {
    "algo.num_envs": 2, "algo.rollout_len": 4, "algo.hidden_sizes": [8],
    # on-policy
    "algo.epochs": 1, "algo.minibatches": 1, "algo.critic_epochs": 1, "algo.cg_iters": 2, "algo.ls_steps": 2,
    # off-policy
    "algo.buffer_size": 64, "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 2,
    "algo.critic_hidden": 8, "algo.attention_heads": 2, "algo.policy_delays": [1, 2],
}
ENV = {"env.n_agents": 2, "env.max_cycles": 5}  # simple_spread: 2 agents, 5-step episodes
ALGOS = [n for n in algo_names() if algo_spec(n).family != "test"]
# Variants whose state and update are their parent's with another loss (their own tests check the loss and,
# where it exists, the reduction to the parent bit for bit): the contract runs them in the slow suite only,
# which keeps the default suite under 20 minutes on 2 cores. F2A2-SAC (MAAC plus per-agent copies) and MAMT (MAMD
# plus trust-region networks), HATRPO (HAPPO's state, a line-searched step) and F2A2-COMA (COMA plus copies) are
# there for the same budget: their own tests check the added state and losses.
VARIANTS = {"ippo": "mappo", "jrppo": "mappo", "mamd": "maac", "mamd_op": "mamd", "ma_ac": "f2a2_coma",
            "iql": "vdn", "vdn": "qmix", "qtran": "qmix", "matd3": "maddpg", "f2a2_ddpg": "maddpg", "f2a2_td3": "f2a2_ddpg",
            "f2a2_sac": "maac", "mamt": "mamd", "hatrpo": "happo", "f2a2_coma": "coma"}
CONTRACT = [pytest.param(n, marks=pytest.mark.slow) if n in VARIANTS else n for n in ALGOS]
# the host-env run exercises the host backend, which is the same for every algorithm of a family: one each
# (MADDPG and MAPPO where their family has them, MATRL for its own per-agent host path)
_PREFERRED = ("mappo", "maddpg", "matrl")
HOST_ALGOS = [n for n in _PREFERRED if n in ALGOS] + sorted(
    {algo_spec(n).family: n for n in reversed(ALGOS)
     if algo_spec(n).family not in {algo_spec(p).family for p in _PREFERRED if p in ALGOS}}.values())


def overrides(algo: str, **extra):
    cls = algo_config_class(algo)
    fields = {f.name for f in dataclasses.fields(cls)} - set(getattr(cls, "UNUSED", {}))
    out = {k: v for k, v in TINY.items() if k[len("algo."):] in fields}
    if "share_params" in fields:
        out["algo.share_params"] = False
    return {**out, **ENV, **extra}


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with compilation_cache(tmp_path_factory.mktemp("jax_cache_contract")):
        yield


def bitwise_equal(x, y) -> bool:
    lx, ly = jax.tree.leaves(x), jax.tree.leaves(y)
    return len(lx) == len(ly) and all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(lx, ly))


def resume_is_bitwise(cfg, tmp_path):
    """Train ``cfg`` whole (``full``) and stopped after one chunk then resumed (``part``); assert both end
    completed with bitwise-equal states and the same metrics rows. Returns the full run's summary, state and rows."""
    kw = dict(progress=False, tensorboard=False)
    full = train(cfg, tmp_path / "full", **kw)
    train(cfg, tmp_path / "part", stop_after_chunks=1, **kw)
    resumed = train(None, tmp_path / "part", resume=True, **kw)
    assert full["status"] == resumed["status"] == "completed" and full["updates"] == 6
    s_full, s_part = load_run_state(tmp_path / "full")[2], load_run_state(tmp_path / "part")[2]
    assert bitwise_equal(s_full, s_part)
    rows_full = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    rows_part = read_jsonl(tmp_path / "part" / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    same = lambda x, y: x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))  # noqa: E731
    assert len(rows_full) == len(rows_part)
    assert all(r1.keys() == r2.keys() and all(same(r1[k], r2[k]) for k in r1) for r1, r2 in zip(strip(rows_full), strip(rows_part)))
    return full, s_full, rows_full


@pytest.mark.parametrize("algo", CONTRACT)
def test_jit_vmap_metrics_evaluation_and_bitwise_resume(algo, tmp_path):
    """A run stopped after one chunk and resumed from its checkpoint ends bitwise equal to an
    uninterrupted run (replay buffers and target networks included), with the same metrics rows; then
    the runner's own chunk program (jit + vmap over seeds; compiled once: the module's persistent cache)
    on a fresh state gives every required metric with the right shapes, and evaluation per seed."""
    cfg = build_config(algo, "mpe/simple_spread", overrides(algo, total_steps=48, chunk_updates=2, num_seeds=2,
                                                             checkpoint_every=1, eval_every=16, eval_episodes=2))
    full, _, rows_full = resume_is_bitwise(cfg, tmp_path)
    evals = [r for r in rows_full if math.isfinite(r.get("eval/return", math.nan))]
    assert [r["env_steps"] for r in evals] == [16, 32, 48]  # every eval_every env steps, and at the end
    assert full["final_eval_return"] == pytest.approx(evals[-1]["eval/return"])
    res = evaluate_run(tmp_path / "full", episodes=2)
    assert len(res["per_seed_return"]) == 2 and math.isfinite(res["mean_return"])

    a = build_algorithm(cfg)  # as the runner builds it: the same programs, found in the compilation cache
    state, m = _Chunks(a, cfg.chunk_updates, donate=has_bulk(a))(init_seeds(a, seed_keys(cfg)), 2)
    for name in REQUIRED_METRICS:
        assert name in m, name
    assert np.asarray(m["env_steps"]).tolist() == [[8, 16]] * 2
    assert m["episode_return_per_agent"].shape == (2, 2, 2)
    finite = np.isfinite(np.asarray(m["episode_return"]))
    assert finite[:, 1:].all()  # 5-step episodes end in every update after the first
    np.testing.assert_allclose(np.asarray(m["episode_return_sum"])[finite],
                               np.asarray(m["episode_return_per_agent"]).sum(-1)[finite], rtol=1e-5)
    assert any(k.startswith("loss/") for k in m)
    per_agent = [k for k in m if k.endswith("_per_agent")]
    assert per_agent and all(np.shape(m[k])[-1] == 2 for k in per_agent), per_agent
    res = make_backend(cfg, a).evaluate(state, episodes=2, seed=7)
    assert res["return"].shape == (2,) and np.isfinite(res["return"]).all()
    assert res["return_per_agent"].shape == (2, 2) and (res["length"] == 5).all()
    view = jax.vmap(a.policy_view)(state)
    assert jax.tree.leaves(view)[0].shape[0] == 2


@pytest.mark.parametrize("algo", HOST_ALGOS)
def test_host_env_run(algo, tmp_path):
    """An algorithm of each family on the host (PettingZoo) version of the env, through the runner."""
    cfg = build_config(algo, "pettingzoo/simple_spread", overrides(algo, total_steps=24, chunk_updates=3))
    summary = train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert summary["status"] == "completed" and summary["env_steps"] == 24
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 3 and all(r["episodes"] > 0 for r in rows[1:])
    assert all(-100 < r["episode_return"] < 0 for r in rows[1:])
    res = evaluate_run(tmp_path / "run", episodes=2)
    assert math.isfinite(res["mean_return"]) and res["mean_length"] == 5
