"""Vectorised host environments: ``num_envs`` copies in worker processes, numpy TimeStep batches.

``HostVecEnv(env_fns, num_workers, seed)`` builds ``env_fns[i]()`` (a PettingZoo Parallel API env, or a
:class:`~trustmarl.envs.host.pettingzoo_adapter.PettingZooAdapter`) for every copy ``i``. Copies are
split into contiguous chunks, one chunk per worker process ("spawn" start method by default, factories
sent with ``cloudpickle`` so closures work); ``num_workers=0`` runs every copy in this process.

Every field of the returned :class:`~trustmarl.envs.base.TimeStep` is a numpy array with a leading
``[num_envs]`` axis. A copy whose episode ends is reset inside its worker; ``final_obs`` and
``final_state`` then hold the episode's last observation and state (they equal ``obs``/``state``
otherwise), exactly like :meth:`trustmarl.envs.base.MultiAgentEnv.step`.

**Seeding.** Episode ``k`` (counting from 0 at ``reset``) of copy ``i`` is reset with the seed
``SeedSequence([seed, i, k])``, so a run depends only on ``seed`` and the actions, not on the number of
workers or on how fast they run.

**Errors.** An exception inside a copy becomes :class:`~trustmarl.envs.host.HostEnvError` in the parent,
naming the worker index and the env index and quoting the original exception and traceback; a worker
that dies is reported the same way. ``close()`` always returns and leaves no process behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from typing import Any, Callable, Sequence

import cloudpickle
import numpy as np

from trustmarl.envs.base import AgentGroup, TimeStep
from trustmarl.envs.host import HostEnvError

_POLL_S = 0.2  # how often a waiting parent checks that its worker is still alive
_CLOSE_TIMEOUT_S = 5.0


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of copy ``env_index`` (deterministic in all three)."""
    return int(np.random.SeedSequence([seed, env_index, episode]).generate_state(1, np.uint32)[0])


class _EnvFailure(Exception):
    """An exception raised by copy ``env_index`` (with the formatted original traceback)."""

    def __init__(self, env_index: int | None, text: str):
        super().__init__(text)
        self.env_index = env_index
        self.text = text


def _wrap(env: Any) -> Any:
    from trustmarl.envs.host.pettingzoo_adapter import PettingZooAdapter

    return env if isinstance(env, PettingZooAdapter) else PettingZooAdapter(env)


def _spec(adapter: Any) -> tuple:
    return tuple(adapter.groups), int(adapter.state_dim)


def _stack(steps: list, finals: list) -> dict[str, Any]:
    """Stack per-copy ``Step``s (after auto-reset) and their final obs/state on a leading axis."""
    n_groups = len(steps[0].obs)
    return {
        "obs": tuple(np.stack([s.obs[g] for s in steps]) for g in range(n_groups)),
        "avail": tuple(np.stack([s.avail[g] for s in steps]) for g in range(n_groups)),
        "state": np.stack([s.state for s in steps]),
        "reward": np.stack([s.reward for s in steps]),
        "terminated": np.array([s.terminated for s in steps], dtype=bool),
        "truncated": np.array([s.truncated for s in steps], dtype=bool),
        "active": np.stack([s.active for s in steps]),
        "final_obs": tuple(np.stack([f[0][g] for f in finals]) for g in range(n_groups)),
        "final_state": np.stack([f[1] for f in finals]),
        "final_avail": tuple(np.stack([f[2][g] for f in finals]) for g in range(n_groups)),
    }


class _EnvChunk:
    """The copies of one worker: builds them, resets, steps and auto-resets them."""

    def __init__(self, env_fns: Sequence[Callable[[], Any]], env_indices: Sequence[int]):
        self.env_indices = list(env_indices)
        self.envs = []
        for i, fn in zip(self.env_indices, env_fns):
            self.envs.append(self._guard(i, lambda fn=fn: _wrap(fn())))
        self.seed = 0
        self.episodes = [0] * len(self.envs)

    @staticmethod
    def _guard(env_index: int, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - every env error is reported to the parent
            text = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
            raise _EnvFailure(env_index, text) from err

    def spec(self) -> tuple:
        return _spec(self.envs[0])

    def _reset_one(self, j: int) -> Any:
        seed = episode_seed(self.seed, self.env_indices[j], self.episodes[j])
        return self._guard(self.env_indices[j], lambda: self.envs[j].reset(seed=seed))

    def reset(self, seed: int) -> dict[str, Any]:
        self.seed = int(seed)
        self.episodes = [0] * len(self.envs)
        steps = [self._reset_one(j) for j in range(len(self.envs))]
        return _stack(steps, [(s.obs, s.state, s.avail) for s in steps])

    def step(self, actions: tuple) -> dict[str, Any]:
        steps, finals = [], []
        for j, env in enumerate(self.envs):
            act = tuple(a[j] for a in actions)
            s = self._guard(self.env_indices[j], lambda env=env, act=act: env.step(act))
            finals.append((s.obs, s.state, s.avail))
            if s.terminated or s.truncated:
                self.episodes[j] += 1
                r = self._reset_one(j)
                s.obs, s.avail, s.state, s.active = r.obs, r.avail, r.state, r.active
            steps.append(s)
        return _stack(steps, finals)

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def _worker_main(conn: Any, payload: bytes, env_indices: list[int]) -> None:
    """Worker process loop: build the chunk, then answer ``(command, args)`` messages."""
    chunk = None
    try:
        chunk = _EnvChunk(cloudpickle.loads(payload), env_indices)
        conn.send(("ok", chunk.spec()))
    except _EnvFailure as f:
        conn.send(("error", f.env_index, f.text))
    except Exception as err:  # noqa: BLE001
        conn.send(("error", None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    while True:
        try:
            cmd, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if cmd == "close":
            if chunk is not None:
                chunk.close()
            conn.send(("ok", None))
            break
        try:
            if chunk is None:
                raise RuntimeError("the environments of this worker failed to build")
            conn.send(("ok", getattr(chunk, cmd)(*args)))
        except _EnvFailure as f:
            conn.send(("error", f.env_index, f.text))
        except Exception as err:  # noqa: BLE001
            conn.send(("error", None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    conn.close()


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, v in parts[0].items():
        if isinstance(v, tuple):
            out[k] = tuple(np.concatenate([p[k][g] for p in parts]) for g in range(len(v)))
        else:
            out[k] = np.concatenate([p[k] for p in parts])
    return out


class HostVecEnv:
    """``num_envs`` host environment copies behind the contract (see the module docstring).

    Factories must be picklable by ``cloudpickle`` when ``num_workers > 0``; the spawned workers import
    the modules the factories refer to, so those must be importable from ``sys.path``.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        num_workers: int | None = None,
        seed: int = 0,
        context: str = "spawn",
    ):
        if not env_fns:
            raise ValueError("env_fns is empty")
        self.num_envs = len(env_fns)
        self.seed = int(seed)
        if num_workers is None:
            num_workers = min(self.num_envs, os.cpu_count() or 1)
        self.num_workers = max(0, min(int(num_workers), self.num_envs))
        self._closed = False
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._local: _EnvChunk | None = None
        n_chunks = max(self.num_workers, 1)
        self._chunks = [[int(i) for i in c] for c in np.array_split(np.arange(self.num_envs), n_chunks)]
        if self.num_workers == 0:
            self._local = self._run_local(lambda: _EnvChunk(env_fns, self._chunks[0]))
            specs = [self._local.spec()]
        else:
            specs = self._start_workers(env_fns, context)
        groups, state_dim = specs[0]
        for w, spec in enumerate(specs[1:], start=1):
            if spec != specs[0]:
                self.close()
                raise HostEnvError(f"worker {w}: its environments have different spaces than worker 0's")
        self.groups: tuple[AgentGroup, ...] = groups
        self.state_dim: int = state_dim
        self.agents = tuple(a for g in groups for a in g.agents)
        self.n_agents = len(self.agents)

    # --- process management ---------------------------------------------------------------------
    def _start_workers(self, env_fns: Sequence[Callable[[], Any]], context: str) -> list:
        ctx = mp.get_context(context)
        for chunk in self._chunks:
            parent, child = ctx.Pipe()
            payload = cloudpickle.dumps([env_fns[i] for i in chunk])
            proc = ctx.Process(target=_worker_main, args=(child, payload, chunk), daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        try:
            return [self._recv(w) for w in range(self.num_workers)]
        except HostEnvError as err:
            self.close()
            if "died" in str(err) and context == "spawn":
                raise HostEnvError(
                    f"{err}. Worker processes are spawned and re-import the main module: when training from a "
                    "script, put the code under `if __name__ == '__main__':`"
                ) from err
            raise
        except BaseException:
            self.close()
            raise

    def _recv(self, w: int) -> Any:
        conn, proc = self._conns[w], self._procs[w]
        while not conn.poll(_POLL_S):
            if not proc.is_alive() and not conn.poll(0):
                raise HostEnvError(f"worker {w} (envs {self._chunks[w]}) died with exit code {proc.exitcode}")
        try:
            msg = conn.recv()
        except (EOFError, OSError) as err:
            raise HostEnvError(f"worker {w} (envs {self._chunks[w]}) died: {err!r}") from err
        if msg[0] == "error":
            raise HostEnvError(self._error_text(w, msg[1], msg[2]))
        return msg[1]

    def _error_text(self, w: int, env_index: int | None, text: str) -> str:
        where = f"env {env_index}" if env_index is not None else f"envs {self._chunks[w]}"
        return f"worker {w}, {where} raised {text}"

    def _run_local(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _EnvFailure as f:
            raise HostEnvError(self._error_text(0, f.env_index, f.text) + " (in-process, num_workers=0)") from f

    def _call(self, cmd: str, per_worker_args: list[tuple]) -> dict[str, Any]:
        if self._closed:
            raise HostEnvError("the HostVecEnv is closed")
        if self._local is not None:
            return self._run_local(lambda: getattr(self._local, cmd)(*per_worker_args[0]))
        for conn, args in zip(self._conns, per_worker_args):
            conn.send((cmd, args))
        results, first_error = [], None
        for w in range(self.num_workers):  # receive every answer so the pipes stay in sync
            try:
                results.append(self._recv(w))
            except HostEnvError as err:
                first_error = first_error or err
        if first_error is not None:
            raise first_error
        return _concat(results)

    # --- API ------------------------------------------------------------------------------------
    @staticmethod
    def _timestep(d: dict[str, Any]) -> TimeStep:
        return TimeStep(**d)

    @property
    def local_envs(self) -> list[Any]:
        """The adapters of an in-process (``num_workers=0``) vector env, for tests and debugging."""
        if self._local is None:
            raise AttributeError("local_envs is only available with num_workers=0")
        return self._local.envs

    def reset(self, seed: int | None = None) -> TimeStep:
        """Reset every copy (episode seeds derived from ``seed``, default the constructor's)."""
        if seed is not None:
            self.seed = int(seed)
        return self._timestep(self._call("reset", [(self.seed,)] * max(self.num_workers, 1)))

    def step(self, actions: Sequence[np.ndarray]) -> TimeStep:
        """Step every copy with ``actions`` per group: ``[num_envs, n_g]`` int or ``[num_envs, n_g, dim]`` float."""
        actions = tuple(np.asarray(a) for a in actions)
        if len(actions) != len(self.groups):
            raise ValueError(f"expected actions for {len(self.groups)} groups, got {len(actions)}")
        for g, a in zip(self.groups, actions):
            if a.shape[:2] != (self.num_envs, g.n):
                raise ValueError(f"actions of group {g.name!r} must start with [{self.num_envs}, {g.n}], got {a.shape}")
        per_worker = [(tuple(a[c[0] : c[-1] + 1] for a in actions),) for c in self._chunks]
        return self._timestep(self._call("step", per_worker))

    def close(self) -> None:
        """Stop the workers (idempotent; terminates workers that do not answer)."""
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
        for conn in self._conns:
            try:
                conn.send(("close", ()))
            except (OSError, BrokenPipeError):
                pass
        for conn, proc in zip(self._conns, self._procs):
            try:
                if conn.poll(_CLOSE_TIMEOUT_S):
                    conn.recv()
            except (EOFError, OSError):
                pass
            proc.join(timeout=_CLOSE_TIMEOUT_S)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=_CLOSE_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()

    def __enter__(self) -> "HostVecEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
