"""Each algorithm once, at its defaults, on a small task none of them was tuned for.

``Rendezvous`` (defined here, written before any algorithm was run on it): ``n`` agents start on random
cells of a ring of ``size`` cells and move left, stay or right each step for ``horizon`` steps. Every step
the team gets ``-(distinct occupied cells - 1) / (n - 1)`` (0 once all share a cell, -1 when all are apart),
so the return lies in ``[-horizon, 0]``; an agent sees its own cell and the others' offsets from it
(one-hot) and the time left. With 3 agents, a ring of 8 and 12 steps, uniform random play scores -9.84 and
the meeting policy below -1.06 (2,000 episodes each, printed by the script).

    python benchmarks/tryout.py --algos f2a2_ddpg f2a2_td3 maddpg --steps 60000 --seeds 3

prints, per algorithm, the return of its first and last training episodes (mean over seeds) beside the
random policy's and the meeting policy's (every agent walks to agent 0's start cell by the short way), and
writes ``benchmarks/results/tryout.json``. Nothing is asserted: this is what each algorithm does out of
the box on a task nobody tuned it for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trustmarl.envs.base import AgentGroup, Discrete, MultiAgentEnv  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Rendezvous(MultiAgentEnv):
    """Agents on a ring meet on one cell (team reward: minus the spread of their cells)."""

    description = "agents on a ring of cells meet on one cell (written for benchmarks/tryout.py)"
    team: int = 3  # agents
    size: int = 8  # cells on the ring
    horizon: int = 12  # steps per episode

    @property
    def groups(self):
        return (AgentGroup("agent", tuple(f"agent_{i}" for i in range(self.team)),
                           obs_dim=self.team * self.size + 1, action_space=Discrete(3)),)

    @property
    def state_dim(self) -> int:
        return self.team * self.size + 1

    @property
    def max_episode_steps(self) -> int:
        return self.horizon

    @property
    def min_episode_steps(self) -> int:
        return self.horizon

    def _timestep(self, pos, t, reward, done):
        n, L = self.team, self.size
        left = jnp.full((n, 1), 1.0 - t / self.horizon)
        offsets = (pos[None, :] - pos[:, None]) % L  # [n, n]: agent j's cell relative to agent i's
        others = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int32).reshape(n, n - 1)
        cells = jnp.concatenate([pos[:, None], jnp.take_along_axis(offsets, others, 1)], 1)  # own cell, others' offsets
        rel = jax.nn.one_hot(cells, L)
        obs = jnp.concatenate([rel.reshape(n, n * L), left], -1)
        state = jnp.concatenate([jax.nn.one_hot(pos, L).reshape(-1), left[0]])
        return self.make_timestep((obs,), (jnp.ones((n, 3), bool),), state, jnp.full((n,), reward, jnp.float32),
                                  terminated=False, truncated=done)

    def _reset(self, key):
        pos = jax.random.randint(key, (self.team,), 0, self.size)
        return (pos, jnp.int32(0)), self._timestep(pos, 0, 0.0, False)

    def _step(self, key, state, actions):
        pos, t = state
        pos = (pos + actions[0] - 1) % self.size
        t = t + 1
        distinct = jnp.sum(jnp.any(jax.nn.one_hot(pos, self.size) > 0, axis=0))
        reward = -(distinct - 1) / max(self.team - 1, 1)
        return (pos, t), self._timestep(pos, t, reward, t >= self.horizon)


def _baseline(env: Rendezvous, policy: str, episodes: int = 2000) -> float:
    """Mean return of uniform random play or of the meeting policy (all walk to agent 0's start cell)."""
    rng, total = np.random.default_rng(0), 0.0
    n, L = env.team, env.size
    for _ in range(episodes):
        pos = rng.integers(0, L, n)
        goal = pos[0]
        for _t in range(env.horizon):
            if policy == "random":
                move = rng.integers(0, 3, n) - 1
            else:
                d = (goal - pos) % L
                move = np.where(d == 0, 0, np.where(d <= L // 2, 1, -1))
            pos = (pos + move) % L
            total += -(len(set(pos.tolist())) - 1) / max(n - 1, 1)
    return total / episodes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", nargs="+", default=["f2a2_ddpg", "f2a2_td3", "maddpg", "matd3"],
                   help="algorithms, each optionally with settings: maddpg:critic=shared,tau=0.05")
    p.add_argument("--steps", type=int, default=60_000, help="env steps per run")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tryout.json")
    args = p.parse_args(argv)
    from trustmarl.experiment import runner
    from trustmarl.experiment.config import build_config
    import tempfile

    env = Rendezvous()
    rows = [{"policy": "random", "return": _baseline(env, "random")}, {"policy": "meet", "return": _baseline(env, "meet")}]
    print(f"Rendezvous (3 agents, ring 8, 12 steps): random {rows[0]['return']:.2f}, meeting policy {rows[1]['return']:.2f}")
    from trustmarl.experiment.config import parse_overrides

    for algo in args.algos:
        name, _, extra = algo.partition(":")
        over = parse_overrides([f"algo.{kv}" for kv in extra.split(",") if kv])
        with tempfile.TemporaryDirectory() as d:
            cfg = build_config(name, "tryout:Rendezvous", {"total_steps": args.steps, "num_seeds": args.seeds,
                                                           "eval_every": 0, **over})
            t0 = time.perf_counter()
            s = runner.train(cfg, Path(d) / "run", progress=False, tensorboard=False)
            row = {"algo": algo, "initial_return": s["initial_return"], "final_return": s["final_return"],
                   "final_return_per_seed": s["final_return_per_seed"], "env_steps": s["env_steps"],
                   "status": s["status"], "wall_s": time.perf_counter() - t0}
        rows.append(row)
        print(f"{algo}: {row['initial_return']:.2f} -> {row['final_return']:.2f} (per seed "
              f"{', '.join(f'{x:.2f}' for x in row['final_return_per_seed'])}) in {row['env_steps']} steps, {row['wall_s']:.0f} s")
    args.out.write_text(json.dumps({"env": "Rendezvous(n=3, size=8, horizon=12)", "steps": args.steps,
                                    "seeds": args.seeds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
