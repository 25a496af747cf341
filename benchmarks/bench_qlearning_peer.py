"""Our QMIX and VDN against JaxMARL's own Q-learning baselines, run unchanged, at JaxMARL's settings.

JaxMARL's ``baselines/QLearning/qmix_rnn.py`` and ``vdn_rnn.py`` (pymarl-style recurrent Q-learners, from a
checkout given by ``--jaxmarl-repo PATH`` or ``JAXMARL_REPO``; run by ``jaxmarl_baseline.py`` with stubs for
wandb/hydra/omegaconf only; they also need ``flashbax``, which is imported for real) run next to our ``qmix``
and ``vdn`` built from the same YAML config (:func:`our_overrides`), in fresh processes that alternate
within each round (ours-qmix, JaxMARL QMIX, ours-vdn, JaxMARL VDN), with K vmapped seeds. Measured, as in
``bench_mpe.py`` (its ``summarize``): the steady env steps/s (K x env steps per update x updates after the
first chunk / their time), compilation and end-to-end seconds, and the training return (and on SMAX the
training win rate) per update, mean and per seed, at equal env steps.

Two settings (``--env``):

- ``smax``: SMAX 3m (JaxMARL ``HeuristicEnemySMAX``, ``MAP_NAME=3m`` over ``ql_rnn_smax.yaml``'s ``3s_vs_5z``),
  ``ql_rnn_smax.yaml``: GRU 512 agents, 16 envs x 128 steps per update, 8 gradient steps of 32 trajectories.
  On 2 CPU cores one of JaxMARL's updates takes ~15-25 s per seed, and learning starts only after 32 updates
  (65,536 env steps, see below), so these runs measure speed only (a few updates; the return is logged, no claim).
- ``mpe``: MPE simple_spread (JaxMARL ``MPE_simple_spread_v3``; ours ``mpe/simple_spread``, the same mpe2
  dynamics), ``ql_rnn_mpe.yaml``: GRU 64 agents, 8 envs x 26 steps per update, 1 gradient step of 32
  trajectories: cheap enough for the return reached at equal env steps.

``--schedule-steps`` is JaxMARL's ``TOTAL_TIMESTEPS`` (it sets the length of their scan, their epsilon decay
(``EPS_DECAY`` of the updates) and test interval; at least 20 updates, or their ``TEST_INTERVAL`` of 5%
rounds to 0); ``--steps`` stops both contenders there (JaxMARL's run is stopped by the wandb.log stub).

**JaxMARL's settings -> ours** (:func:`our_overrides`; JaxMARL's key, ours, and what differs):

=========================== ============================================== ==========================================
JaxMARL (``ql_rnn_*.yaml``)  ours (``algo.*``)                               note
=========================== ============================================== ==========================================
NUM_ENVS                    num_envs                                       same
NUM_STEPS                   rollout_len                                    theirs resets every env at each update;
                                                                           ours continues the episodes
HIDDEN_SIZE                 hidden_sizes [H], gru_size H, recurrent,       Dense-ReLU-GRU-Dense in both
                            activation relu
(CTRolloutManager ids)      share_params true, agent_id true               one-hot agent id appended in both
BUFFER_SIZE (trajectories)  buffer_size 0 (the run's steps)                neither buffer fills in these runs
BUFFER_BATCH_SIZE B         sequences episodes, seq_len = episode limit    equal step-samples per gradient step:
                            L, batch_size round(B x NUM_STEPS / L)         B trajectories of NUM_STEPS steps
NUM_EPOCHS                  grad_steps                                     gradient steps per update
LR, RAdam                   actor_lr = critic_lr, Adam                     no RAdam; LR_LINEAR_DECAY (mpe) not
                                                                           available: constant
MAX_GRAD_NORM               actor_/critic_max_grad_norm                    theirs one clip over agent + mixer
TARGET_UPDATE_INTERVAL,TAU  target_update hard, target_every = interval x  theirs counts updates, ours
                            NUM_EPOCHS                                     gradient steps
EPS_START/FINISH/DECAY      epsilon_start/end, epsilon_anneal_end =        theirs linear in updates, ours in
                            EPS_DECAY x TOTAL_TIMESTEPS                    env steps (the same line)
LEARNING_STARTS             learning_starts = max(LEARNING_STARTS,         theirs also waits for B trajectories
                            B x NUM_ENVS x NUM_STEPS)                      per env copy in flashbax (B updates)
GAMMA                       gamma                                          same
REW_SCALE (smax 10)         reward_scale                                   same
rewards["__all__"]          team_reward mean (smax) / sum (mpe)            CTRolloutManager: first ally's reward
                                                                           (smax), sum over agents (mpe)
double Q                    double_q true                                  online argmax, target value
MIXER_EMBEDDING_DIM         mixer_embed (qmix)                             same
MIXER_HYPERNET_HIDDEN_DIM   hypernet_hidden (qmix)                         same; V(s) two layers in both
MIXER_INIT_SCALE            mixer_init_scale (qmix)                        same: orthogonal(scale) mixer kernels
TEST_* (greedy test)        (none in the timed loop)                       under vmap their test runs every
                                                                           update (see below)
=========================== ============================================== ==========================================

**Before learning starts, only ours learns.** Their update decides ``is_learn_time`` and the test interval
with ``lax.cond`` on the step counters and buffer indices, which their train function creates inside the
vmapped function from constants: they stay unbatched under vmap, so the ``cond`` survives (measured: the
jaxpr of ``jax.vmap(make_train(config, env))`` keeps its learning and test ``cond``\ s) and their updates before
``LEARNING_STARTS`` are rollouts only (plus the greedy test at its interval). Ours (``jit(vmap(scan(update)))``
over a state initialised per seed) has batched counters, but the library names its vmap over seeds and reduces
the learning predicate (equal for every seed) over it (``trustmarl.algos.base.uniform_over_seeds``), so its
``cond`` survives too. Before that change every update computed its ``grad_steps`` gradient steps and discarded
them until learning started (0.40x theirs at the stored settings); after it, 22x theirs
(``results/bench_qlearning_peer_smax_one_branch.json``). Neither is a like-for-like update: at these settings
(6,144 env steps, learning from 65,536 on, ``TOTAL_TIMESTEPS`` 40,960: 20 updates) their greedy test
(``TEST_INTERVAL`` 5% of the updates) runs at every update and ours not at all. The
The
gradient step itself, timed in isolation on the same machine and load (~15): ours 5.0 s (``train_step``:
online unroll with gradient + target unroll + mixer, 41 episodes x 100 steps), theirs 5.4 s (their
``RNNQNetwork`` on 32 x 128 steps: forward 1.3 s + gradient 4.1 s, mixer not included).

**The returns compared** are those of the greedy test their scripts run (``get_greedy_metrics``: TEST_NUM_ENVS
fresh episodes per seed, the nan-mean of ``returned_episode_returns`` / ``returned_won_episode`` over the
steps where an episode ended; MPE: MPELogWrapper's reward times the number of agents, i.e. the sum over
agents; SMAX: the shared team reward, unscaled), theirs at their last test (their final update when
``--steps`` equals ``--schedule-steps``), ours from the same number of fresh greedy episodes per seed played
after the timed run (``return_sum`` on MPE, ``return`` and ``win_rate`` on SMAX). Their per-update *training*
metric is not comparable: every update resets the envs, and the carried ``returned_episode_returns`` is 0 on
the steps before the first episode of the rollout ends, so its mean over the rollout is diluted (on MPE to
about 2/26 of the return); it is kept in the JSON (``curve_mean_return``) with ours (the mean return of the
episodes that ended in each update).

Run from the repository root (JaxMARL's scripts need ``pip install flashbax``)::

    python benchmarks/bench_qlearning_peer.py --jaxmarl-repo ../JaxMARL --env mpe --seeds 1 8
    python benchmarks/bench_qlearning_peer.py --jaxmarl-repo ../JaxMARL --env smax --seeds 1 --steps 8192

``--breakdown`` times where our update goes instead (no race; JaxMARL's checkout gives only the config): with
each K, the whole update, the update without its gradient steps, and the rollout alone, as the timed loop runs
them (:func:`breakdown_fresh`), and each part's time relative to one seed's::

    python benchmarks/bench_qlearning_peer.py --jaxmarl-repo ../JaxMARL --env mpe --seeds 1 8 --contenders ours-qmix --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jaxmarl_baseline  # noqa: E402
from bench_env import machine_info  # noqa: E402
from bench_mpe import nanmean, summarize, train_chunks  # noqa: E402
from jaxmarl_baseline import add_repo_argument, missing_files, print_result, read_config, run_fresh  # noqa: E402

SETTINGS = {  # --env -> our env, JaxMARL's baselines, their config overrides, episode limit, our return metric
    "smax": {"env": "smax/3m", "theirs": {"qmix": "jaxmarl-qmix-rnn-smax", "vdn": "jaxmarl-vdn-rnn-smax"},
             "overrides": {"MAP_NAME": "3m"}, "episode_limit": 100, "team_reward": "mean",
             "return": "episode_return", "win": "episode_win_rate",
             "steps": 8192, "schedule_steps": 40960, "chunk": 1},
    "mpe": {"env": "mpe/simple_spread", "theirs": {"qmix": "jaxmarl-qmix-rnn-mpe", "vdn": "jaxmarl-vdn-rnn-mpe"},
            "overrides": {}, "episode_limit": 25, "team_reward": "sum",
            "return": "episode_return_sum", "win": None,
            "steps": 199_680, "schedule_steps": 199_680, "chunk": 48},
}
THEIR_KEYS = ("returned_won_episode", "test_returned_episode_returns", "test_returned_won_episode")
ROUND = ("ours-qmix", "jaxmarl-qmix", "ours-vdn", "jaxmarl-vdn")


def our_overrides(their: dict[str, Any], algo: str, setting: dict[str, Any], schedule_steps: int) -> dict[str, Any]:
    """Our ``algo.*`` overrides for JaxMARL's config ``their`` (the table in the module docstring)."""
    limit = setting["episode_limit"]
    spu = int(their["NUM_ENVS"] * their["NUM_STEPS"])
    out = {
        "algo.num_envs": int(their["NUM_ENVS"]), "algo.rollout_len": int(their["NUM_STEPS"]),
        "algo.recurrent": True, "algo.hidden_sizes": [int(their["HIDDEN_SIZE"])], "algo.gru_size": int(their["HIDDEN_SIZE"]),
        "algo.activation": "relu", "algo.share_params": True, "algo.agent_id": True, "algo.buffer_size": 0,
        "algo.sequences": "episodes", "algo.seq_len": limit,
        "algo.batch_size": round(their["BUFFER_BATCH_SIZE"] * their["NUM_STEPS"] / limit),
        "algo.grad_steps": int(their["NUM_EPOCHS"]), "algo.actor_lr": float(their["LR"]), "algo.critic_lr": float(their["LR"]),
        "algo.actor_max_grad_norm": float(their["MAX_GRAD_NORM"]), "algo.critic_max_grad_norm": float(their["MAX_GRAD_NORM"]),
        "algo.target_update": "hard", "algo.target_every": int(their["TARGET_UPDATE_INTERVAL"] * their["NUM_EPOCHS"]),
        "algo.epsilon_start": float(their["EPS_START"]), "algo.epsilon_end": float(their["EPS_FINISH"]),
        "algo.epsilon_anneal_start": 0, "algo.epsilon_anneal_end": max(1, int(their["EPS_DECAY"] * schedule_steps)),
        "algo.learning_starts": int(max(their["LEARNING_STARTS"], their["BUFFER_BATCH_SIZE"] * spu)),
        "algo.gamma": float(their["GAMMA"]), "algo.reward_scale": float(their.get("REW_SCALE", 1.0)),
        "algo.team_reward": setting["team_reward"], "algo.double_q": True,
    }
    if algo == "qmix":
        out |= {"algo.mixer_embed": int(their["MIXER_EMBEDDING_DIM"]),
                "algo.hypernet_hidden": int(their["MIXER_HYPERNET_HIDDEN_DIM"]),
                "algo.mixer_init_scale": float(their.get("MIXER_INIT_SCALE", 0.0))}
    else:
        out = {k: v for k, v in out.items() if k not in ("algo.critic_lr", "algo.critic_max_grad_norm")}  # VDN: no mixer
    return out


def train_fresh(t0: float, repo: str, env_key: str, algo_name: str, num_seeds: int, steps: int, schedule_steps: int,
                chunk: int, seed: int) -> None:
    """One of our contenders, in a fresh process started at ``t0``; prints RESULT (bench_mpe.py's format)."""
    import time

    import jax

    from trustmarl.algos import make_algorithm
    from trustmarl.algos.evaluation import JaxStepper, run_episodes
    from trustmarl.experiment.config import build_config

    t_imports = time.time()
    setting = SETTINGS[env_key]
    their = read_config(repo, setting["theirs"][algo_name])
    cfg = build_config(algo_name, setting["env"], our_overrides(their, algo_name, setting, schedule_steps))
    spu = cfg.algo.num_envs * cfg.algo.rollout_len
    n_chunks = max(2, round(steps / (spu * chunk)))
    algo = make_algorithm(cfg, total_updates=n_chunks * chunk)
    names = (setting["return"],) + ((setting["win"],) if setting["win"] else ())
    update_times, returns, per_seed, win, win_per_seed = [], [], [], [], []
    chunks = train_chunks(algo, num_seeds, seed, chunk, n_chunks, names, keep_state=True)
    for m in chunks:  # each [K, C]
        update_times += [time.time()] * chunk  # every update of the chunk ends when the chunk does
        returns += [float(x) for x in nanmean(m[setting["return"]], axis=0)]
        per_seed += m[setting["return"]].T.tolist()
        if setting["win"]:
            win += [float(x) for x in nanmean(m[setting["win"]], axis=0)]
            win_per_seed += m[setting["win"]].T.tolist()
    t_end = time.time()
    # the greedy test JaxMARL's scripts run (TEST_NUM_ENVS fresh episodes per seed), once, after the timed run
    view = jax.vmap(algo.policy_view)(m["state"])
    k_env, k_act = jax.random.split(jax.random.PRNGKey(seed + 1))
    test = run_episodes(algo, view, JaxStepper(algo.env, num_seeds, int(their["TEST_NUM_ENVS"]), k_env), k_act, True)
    greedy = {"test_returned_episode_returns": [float(x) for x in test["return_sum" if setting["team_reward"] == "sum" else "return"]]}
    if "win_rate" in test:
        greedy["test_returned_won_episode"] = [float(x) for x in test["win_rate"]]
    print_result({
        "t_start": t0, "t_imports": t_imports, "update_times": update_times, "t_end": t_end,
        "steps_per_update": spu, "num_seeds": num_seeds, "chunk": chunk, "returns": returns,
        "returns_per_seed": per_seed, "extra": {"returned_won_episode": win} if win else {},
        "extra_per_seed": {"returned_won_episode": win_per_seed} if win else {}, "greedy_test_per_seed": greedy,
        "config": cfg.to_dict(),
    })


def breakdown_fresh(t0: float, repo: str, env_key: str, algo_name: str, num_seeds: int, schedule_steps: int,
                    chunk: int, repeats: int, seed: int) -> None:
    """Where one of our updates goes with K seeds, as the timed loop runs it (``jit(vmap(scan(update)))``, chunks of
    ``chunk`` updates, from a state filled past ``learning_starts``), in a fresh process; prints RESULT.

    Three programs, each carrying its own copy of the state on (donated, as the library's loop donates it: a
    program re-run on one undonated state copies the whole replay buffer per call, which at these sizes costs more
    than the rollout), their calls interleaved ``repeats`` times (median and min ms per update): ``update`` (the
    whole update), ``no_train_step`` (the same update with :meth:`train_step` replaced by one that only reads its
    batch: rollout, buffer insert, sequence sampling and the learning ``cond``) and ``rollout`` (learning never
    starts: rollout and insert only). ``update - no_train_step`` is the gradient steps (GRU unrolls, mixer, Adam)."""
    import time

    import jax
    import jax.numpy as jnp

    from trustmarl.algos import make_algorithm
    from trustmarl.algos.base import SEED_AXIS, init_seeds
    from trustmarl.experiment.config import build_config

    setting = SETTINGS[env_key]
    their = read_config(repo, setting["theirs"][algo_name])
    overrides = our_overrides(their, algo_name, setting, schedule_steps)
    cfg = build_config(algo_name, setting["env"], overrides)
    spu = cfg.algo.num_envs * cfg.algo.rollout_len
    total = max(2 * chunk, schedule_steps // spu)

    def algo_for(variant):
        if variant == "rollout":  # learning never starts
            return make_algorithm(build_config(algo_name, setting["env"], {**overrides, "algo.learning_starts": 2**30}),
                                  total_updates=total)
        algo = make_algorithm(cfg, total_updates=total)
        if variant == "no_train_step":  # the batch is drawn and read, no gradient step
            algo.train_step = lambda st, batch, key: (st, {"batch_sum": sum(jnp.sum(x.astype(jnp.float32))
                                                                            for x in jax.tree.leaves(batch))})
        return algo

    def chunk_of(algo, length):  # the state donated, as the library's loop does: no copy of the replay buffer
        return jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: (algo.update(c)[0], None), s, None,
                                                       length=length)[0], axis_name=SEED_AXIS), donate_argnums=0)

    algo = algo_for("update")
    state = init_seeds(algo, jax.random.split(jax.random.PRNGKey(seed), num_seeds))
    fill = -(-cfg.algo.learning_starts // spu) + 1  # updates until every later one learns
    state = jax.block_until_ready(chunk_of(algo, fill)(state))
    programs, states, compile_s = {}, {}, {}
    for variant in ("update", "no_train_step", "rollout"):  # each program carries its own copy of the state on
        programs[variant] = chunk_of(algo_for(variant), chunk)
        t = time.time()
        states[variant] = jax.block_until_ready(programs[variant](jax.tree.map(jnp.copy, state)))
        compile_s[variant] = time.time() - t
    del state
    times = {v: [] for v in programs}
    for _ in range(repeats):
        for v, f in programs.items():
            t = time.time()
            states[v] = jax.block_until_ready(f(states[v]))
            times[v].append((time.time() - t) / chunk)
    print_result({"num_seeds": num_seeds, "chunk": chunk, "fill_updates": fill, "compile_and_first_s": compile_s,
                  "ms_per_update": {v: {"median": 1e3 * float(np.median(x)), "min": 1e3 * min(x), "all": [1e3 * y for y in x]}
                                    for v, x in times.items()},
                  "load_after": os.getloadavg()[0]})


def run_breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """``--breakdown``: :func:`breakdown_fresh` for each of our contenders and K, with each piece's ratio K / 1 seed."""
    rows = []
    for name in args.contenders:
        who, algo = name.split("-")
        if who != "ours":
            continue
        for k in args.seeds:
            res = run_fresh(__file__, "breakdown_fresh", args.timeout, repo=str(args.jaxmarl_repo), env_key=args.env,
                            algo_name=algo, num_seeds=k, schedule_steps=args.schedule_steps, chunk=args.chunk,
                            repeats=args.breakdown_repeats, seed=args.seed)
            rows.append({"contender": name, "num_seeds": k, "load_before": os.getloadavg()[0], **res})
            if "error" in res:
                print(f"  {name} K={k}: error: {res['error'][-600:]}", flush=True)
                continue
            ms = res["ms_per_update"]
            parts = {"rollout": ms["rollout"]["median"],
                     "sampling and cond": ms["no_train_step"]["median"] - ms["rollout"]["median"],
                     "gradient steps": ms["update"]["median"] - ms["no_train_step"]["median"],
                     "update": ms["update"]["median"]}
            rows[-1]["parts_ms_median"] = parts
            one = next((r for r in rows if r["contender"] == name and r["num_seeds"] == 1 and "parts_ms_median" in r), None)
            ratio = {p: v / one["parts_ms_median"][p] for p, v in parts.items()} if one and k > 1 else {}
            rows[-1]["parts_ratio_to_1_seed"] = ratio
            print(f"  {name} K={k}: " + ", ".join(f"{p} {v:.1f} ms" + (f" ({ratio[p]:.1f}x K=1)" if ratio else "")
                                                 for p, v in parts.items()) + f"  load {res['load_after']:.1f}", flush=True)
    return {"machine": machine_info(), "args": recorded_args(args), "breakdown": rows}


def final_per_seed(res: dict[str, Any], key: str | None = None) -> list[float]:
    """Each seed's mean over the last 10% of updates of the return (or of ``extra_per_seed[key]``)."""
    rows = np.asarray(res["returns_per_seed"] if key is None else res["extra_per_seed"][key], dtype=float)  # [U, K]
    return [float(x) for x in nanmean(rows[-max(1, len(rows) // 10):], axis=0)]


def run_contender(name: str, num_seeds: int, repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh process of ``ours-<algo>`` or ``jaxmarl-<algo>`` with K = ``num_seeds``; a row of the table."""
    setting, (who, algo) = SETTINGS[args.env], name.split("-")
    load = os.getloadavg()[0]
    if who == "jaxmarl":
        res = run_fresh(jaxmarl_baseline.__file__, "run_baseline", args.timeout, repo=str(args.jaxmarl_repo),
                        name=setting["theirs"][algo], num_seeds=num_seeds, total_timesteps=args.schedule_steps,
                        max_steps=args.steps, overrides=setting["overrides"], keys=THEIR_KEYS)
    else:
        res = run_fresh(__file__, "train_fresh", args.timeout, repo=str(args.jaxmarl_repo), env_key=args.env,
                        algo_name=algo, num_seeds=num_seeds, steps=args.steps, schedule_steps=args.schedule_steps,
                        chunk=args.chunk, seed=args.seed)
    row = {"contender": name, "num_seeds": num_seeds, "repeat": repeat, "load_before": load}
    if "error" in res:
        return {**row, "error": res["error"]}
    row |= summarize(res)
    row["final_return_per_seed"] = final_per_seed(res)
    if res.get("extra_per_seed", {}).get("returned_won_episode"):
        row["final_win_rate_per_seed"] = final_per_seed(res, "returned_won_episode")
        row["curve_win_rate"] = res["extra"]["returned_won_episode"]
    for k in THEIR_KEYS[1:]:
        if res.get("extra", {}).get(k):
            row[f"curve_{k}"] = res["extra"][k]
    # the final greedy test per seed: theirs the last test their script ran (every 5% of its updates, the last
    # at its final update when --steps = --schedule-steps), ours one run of the same size after training
    greedy = res.get("greedy_test_per_seed") or {k: res["extra_per_seed"][k][-1] for k in THEIR_KEYS[1:]
                                                  if res.get("extra_per_seed", {}).get(k)}
    row["greedy_test_per_seed"] = greedy
    if "config" in res:
        row["config"] = res["config"]
    return row


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / JaxMARL steady steps/s (and seconds) for the same algorithm, K and round."""
    out = []
    for r in rows:
        if not r["contender"].startswith("ours-") or "error" in r:
            continue
        theirs = r["contender"].replace("ours-", "jaxmarl-")
        j = next((x for x in rows if x["contender"] == theirs and x["num_seeds"] == r["num_seeds"]
                  and x["repeat"] == r["repeat"] and "error" not in x), None)
        if j is not None:
            out.append({"algo": r["contender"][5:], "num_seeds": r["num_seeds"], "repeat": r["repeat"],
                        "steady_steps_per_s": r["steady_steps_per_s"] / j["steady_steps_per_s"],
                        "compile_s": r["compile_s"] / j["compile_s"], "e2e_s": r["e2e_s"] / j["e2e_s"]})
    return out


def format_rows(rows: list[dict[str, Any]], rat: list[dict[str, Any]]) -> str:
    lines = ["| contender | K | repeat | env steps/seed | steady steps/s | compile s | e2e s | greedy test return"
             " per seed | greedy test win rate | load before |", "|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        if "error" in r:
            last = r["error"].strip().splitlines()[-1] if r["error"].strip() else "?"
            lines.append(f"| {r['contender']} | {r['num_seeds']} | {r['repeat']} | error: {last} | | | | | | |")
            continue
        g = r.get("greedy_test_per_seed", {})
        ret, win = g.get("test_returned_episode_returns"), g.get("test_returned_won_episode")
        lines.append(
            f"| {r['contender']} | {r['num_seeds']} | {r['repeat']} | {r['env_steps_per_seed']:,}"
            f" | {r['steady_steps_per_s']:,.0f} | {r['compile_s']:.1f} | {r['e2e_s']:.1f}"
            f" | {', '.join(f'{x:.2f}' for x in ret) if ret else '-'}"
            f" | {', '.join(f'{x:.2f}' for x in win) if win else '-'} | {r['load_before']:.2f} |")
    lines += ["", "ours/JaxMARL within each round (steady > 1 and seconds < 1: ours faster):"]
    for x in rat:
        lines.append(f"  {x['algo']} K={x['num_seeds']} repeat {x['repeat']}: steady {x['steady_steps_per_s']:.2f}x,"
                     f" compile {x['compile_s']:.2f}, e2e {x['e2e_s']:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_repo_argument(p)
    p.add_argument("--env", choices=sorted(SETTINGS), default="mpe", help="SMAX 3m or MPE simple_spread (default mpe)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8], help="numbers of vmapped seeds K (default 1 8)")
    p.add_argument("--steps", type=int, default=None, help="env steps per seed of every run (default: per --env)")
    p.add_argument("--schedule-steps", type=int, default=None,
                   help="JaxMARL's TOTAL_TIMESTEPS (their scan, epsilon decay, test interval; default: per --env)")
    p.add_argument("--chunk", type=int, default=None, help="our updates per jitted call (default: per --env)")
    p.add_argument("--repeats", type=int, default=1, help="rounds per K (default 1)")
    p.add_argument("--contenders", nargs="+", choices=ROUND, default=list(ROUND), help="default: all four, alternating")
    p.add_argument("--seed", type=int, default=0, help="our PRNG seed (JaxMARL's: its config's SEED, 0)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed to one process")
    p.add_argument("--breakdown", action="store_true",
                   help="instead of the race: where our update's time goes with each K (rollout, sampling, gradient steps)")
    p.add_argument("--breakdown-repeats", type=int, default=8, help="--breakdown: interleaved timed calls per program")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/bench_qlearning_peer_<env>.json)")
    args = p.parse_args(argv)
    setting = SETTINGS[args.env]
    for name in ("steps", "schedule_steps", "chunk"):
        if getattr(args, name) is None:
            setattr(args, name, setting[name])
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.seeds) < 1 or args.repeats < 1:
        p.error("--seeds and --repeats must be at least 1")
    if not args.jaxmarl_repo:
        p.error(f"--jaxmarl-repo (or JAXMARL_REPO) is needed: a checkout of {jaxmarl_baseline.URL}")
    for name in setting["theirs"].values():
        if missing_files(args.jaxmarl_repo, name):
            p.error(f"--jaxmarl-repo {args.jaxmarl_repo}: no {', '.join(missing_files(args.jaxmarl_repo, name))}")
    their = read_config(args.jaxmarl_repo, setting["theirs"]["qmix"])
    spu = int(their["NUM_ENVS"] * their["NUM_STEPS"])
    if args.schedule_steps < 20 * spu:
        p.error(f"--schedule-steps must be at least {20 * spu} (20 of JaxMARL's updates of {spu} env steps: "
                "their TEST_INTERVAL is 5% of the updates)")
    if args.steps < 2 * spu * args.chunk or args.steps > args.schedule_steps:
        p.error(f"--steps must be between {2 * spu * args.chunk} (two of our chunks) and --schedule-steps")
    if args.out is None:
        args.out = f"benchmarks/results/bench_qlearning_peer_{args.env}{'_breakdown' if args.breakdown else ''}.json"
    return args


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as the results file keeps them: the JaxMARL checkout by its commit and the output by its
    name, not by paths of the machine that ran it."""
    import subprocess

    rev = subprocess.run(["git", "-C", str(args.jaxmarl_repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = rev.stdout.strip() if rev.returncode == 0 else "an unrecorded commit"
    return {**vars(args), "jaxmarl_repo": f"JaxMARL checkout at {commit}", "out": Path(args.out).name}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.breakdown:
        report = run_breakdown(args)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        return report
    info = machine_info()
    print(f"# bench_qlearning_peer --env {args.env}: {args.steps:,} env steps per seed (JaxMARL TOTAL_TIMESTEPS"
          f" {args.schedule_steps:,}), rounds of {', '.join(args.contenders)}, cpus={info['cpu_count']}"
          f" load={' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}", flush=True)
    rows: list[dict[str, Any]] = []
    report = {"machine": info, "args": recorded_args(args), "rows": rows, "ratios": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for k in args.seeds:
        for rep in range(1, args.repeats + 1):
            for name in args.contenders:
                row = run_contender(name, k, rep, args)
                rows.append(row)
                report["ratios"] = ratios(rows)
                out.write_text(json.dumps(report, indent=1))  # after every row: an interrupted run keeps its results
                if "error" in row:
                    print(f"  K={k} repeat {rep} {name:>13}: error: {row['error'][-600:]}", flush=True)
                else:
                    print(f"  K={k} repeat {rep} {name:>13}: steady {row['steady_steps_per_s']:8,.0f} steps/s"
                          f"  compile {row['compile_s']:5.1f} s  e2e {row['e2e_s']:6.1f} s  greedy test"
                          f" {json.dumps(row['greedy_test_per_seed'])}", flush=True)
    print()
    print(format_rows(rows, report["ratios"]))
    return report


if __name__ == "__main__":
    main()
