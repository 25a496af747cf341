"""Where training runs: one backend object per kind of environment, chosen once per run.

Both backends train ``cfg.num_seeds`` seeds of one algorithm object (seeds ``vmap``-ed) and offer
the same operations: ``init`` (fresh state), ``template`` (state shapes for loading a checkpoint),
``resume`` (continue from a restored state), ``run(state, n)`` (``n`` updates, metrics
``[seeds, n, ...]``), ``evaluate`` (deterministic or sampled episodes, per-seed results) and
``close``. The runner, evaluation and rendering never look inside the algorithm's state.

- :class:`JaxBackend`: JAX-native envs; ``run`` is a jitted ``vmap`` over seeds of a ``lax.scan``
  over updates (a *chunk*), compiled once per run. With the run key ``devices=D`` the seed axis is
  sharded over a mesh of ``D`` devices (``jax.shard_map``): each device runs the same chunk program on
  its ``num_seeds / D`` seeds, with no communication between devices. With the run key ``env_blocks=B``
  each seed's env copies are split into ``B`` blocks (a ``vmap`` named ``env_block`` on one device) and
  ``devices=D`` shards the blocks instead of the seeds (mesh axis ``envs``, ``B / D`` blocks per device):
  every block rolls out and samples its own minibatches, and gradients are all-reduced (``pmean``), so the
  program is the same on any device count dividing ``B``.
- :class:`HostBackend`: host (Python) envs in worker processes driven by
  :class:`~trustmarl.rollout.host.HostTrainer`; ``close()`` stops the workers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.algos.base import ENV_BLOCK_AXIS, ENV_DEVICE_AXIS, SEED_AXIS, block_metrics, init_seeds
from trustmarl.algos.evaluation import HostStepper, JaxStepper, run_episodes
from trustmarl.envs.host import HostEnvError
from trustmarl.envs.host import registry as host_registry
from trustmarl.experiment.config import ConfigError, RunConfig, env_kind


def seed_keys(cfg: RunConfig) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)


def resolve_devices(cfg: RunConfig) -> int:
    """How many devices a training run's seed axis (with ``env_blocks > 1``: its env blocks) is sharded over (run
    key ``devices``): ``auto`` takes the most available devices that divide ``num_seeds`` (``env_blocks``).
    ``ConfigError`` (one line) for more devices than this machine has, or more than one device or env block for
    a host env (its learner runs on one device, its copies step in worker processes)."""
    available = jax.device_count()
    if cfg.env_blocks > 1 and env_kind(cfg.env.name) == "host":
        raise ConfigError(f"env_blocks={cfg.env_blocks}: host environments ({cfg.env.name}) step their copies in "
                          "worker processes and cannot split them into blocks; use env_blocks=1")
    split, what = (cfg.env_blocks, "env_blocks") if cfg.env_blocks > 1 else (cfg.num_seeds, "num_seeds")
    if cfg.devices == "auto":
        return max(k for k in range(1, min(available, split) + 1) if split % k == 0)
    d = int(cfg.devices)
    if d > available:
        raise ConfigError(f"devices={d}: this machine has {available} {jax.default_backend()} device(s); "
                          f"use devices=auto or a number <= {available} dividing {what}={split}")
    if d > 1 and env_kind(cfg.env.name) == "host":
        raise ConfigError(f"devices={d}: host environments ({cfg.env.name}) train on one device; use devices=1")
    return d


def seed_mesh(devices: int):
    """A one-axis mesh ``("seeds",)`` over the first ``devices`` devices, or ``None`` for one device."""
    return None if devices == 1 else jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("seeds",))


def env_mesh(devices: int):
    """A one-axis mesh ``("envs",)`` over the first ``devices`` devices, or ``None`` for one device (env blocks)."""
    return None if devices == 1 else jax.sharding.Mesh(np.array(jax.devices()[:devices]), (ENV_DEVICE_AXIS,))


def block_algorithm(algo, blocks: int):
    """The algorithm one env block runs (:meth:`Algorithm.block_part`): ``num_envs / blocks`` env copies, counting
    the env steps of all blocks."""
    return algo.block_part(blocks)


def env_axes(algo, blocks: int):
    """Per leaf of one seed's state: the axis holding its ``num_envs`` env copies, or -1 for a leaf without one
    (parameters, optimiser states, counters, keys: the same in every block). Found by comparing the state's
    shapes with ``num_envs`` and ``num_envs / blocks`` env copies."""
    key = jax.random.PRNGKey(0)
    full, part = jax.eval_shape(algo.init, key), jax.eval_shape(block_algorithm(algo, blocks).init, key)

    def axis(a, b):
        diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        if not diff:
            return -1
        if len(diff) > 1 or a.shape[diff[0]] != b.shape[diff[0]] * blocks:
            raise ValueError(f"{algo.name}: a state leaf of shape {a.shape} has no single env-copy axis")
        return diff[0]

    return jax.tree.map(axis, full, part)


def block_specs(axes):
    """Seed-batched state leaves' ``PartitionSpec``: the env axis (after the seed axis) over ``envs``, else replicated."""
    P = jax.sharding.PartitionSpec
    return jax.tree.map(lambda a: P() if a < 0 else P(*([None] * (a + 1)), ENV_DEVICE_AXIS), axes)


def init_blocks(algo, keys: jax.Array, mesh, axes):
    """:func:`init_seeds` with every leaf's env axis split over ``mesh`` as it is computed (env blocks): no device
    computes or holds more than its env copies' part (replay buffers are the bulk of the state)."""
    if mesh is None:
        return init_seeds(algo, keys)
    P, named = jax.sharding.PartitionSpec, lambda spec: jax.sharding.NamedSharding(mesh, spec)  # noqa: E731
    one = jax.tree.map(lambda a: named(P() if a < 0 else P(*([None] * a), ENV_DEVICE_AXIS)), axes)
    return init_seeds(algo, keys, (one, jax.tree.map(named, block_specs(axes), is_leaf=lambda x: isinstance(x, P))))


def shard_blocks(state, mesh, axes):
    """``state`` (leading seed axis) placed with every leaf's env axis split over ``mesh`` (env blocks)."""
    if mesh is None:
        return state
    return jax.tree.map(lambda x, spec: jax.device_put(x, jax.sharding.NamedSharding(mesh, spec)),
                        state, block_specs(axes))


def shard_seeds(state, mesh):
    """``state`` (leading seed axis on every leaf) placed with its seed axis split over ``mesh``."""
    if mesh is None:
        return state
    return jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds")))


def init_sharded(algo, keys: jax.Array, mesh):
    """:func:`init_seeds` with each device initialising its own seeds: the same values as on one device,
    and no device ever holds more than its share (replay buffers are the bulk of the state)."""
    if mesh is None:
        return init_seeds(algo, keys)
    devices = list(mesh.devices.flat)
    k = len(keys) // len(devices)
    parts = []
    for i, dev in enumerate(devices):
        with jax.default_device(dev):
            parts.append(init_seeds(algo, jax.device_put(keys[i * k:(i + 1) * k], dev)))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    return jax.tree.map(lambda *xs: jax.make_array_from_single_device_arrays(
        (len(keys),) + xs[0].shape[1:], sharding, list(xs)), *parts)


def total_updates(cfg: RunConfig) -> int:
    """Updates of a run: ``total_steps`` env steps per seed, in whole updates (at least one)."""
    return max(1, cfg.total_steps // cfg.algo.steps_per_update())


def env_info(cfg: RunConfig):
    """What an algorithm reads from its env: the JAX-native env itself, or a host env's description
    (groups, state width, episode limit) from one copy built in this process; with the run key
    ``fixed_agents``, wrapped so that only the other agents learn (:mod:`trustmarl.experiment.fixed`)."""
    from trustmarl.experiment.fixed import with_fixed_agents  # run keys fixed_agents / fixed_policy

    if env_kind(cfg.env.name) == "jax":
        from trustmarl.envs import make

        return with_fixed_agents(cfg, make(cfg.env.name, **cfg.env.params))
    try:
        info = host_registry.probe(cfg.env.name, cfg.env.params)
    except HostEnvError:
        raise
    except ImportError as e:
        raise ConfigError(f"{cfg.env.name}: {e}") from None
    except Exception as e:  # noqa: BLE001 - bad keyword arguments, broken env code: report in one line
        raise ConfigError(f"{cfg.env.name}: building the environment failed: {type(e).__name__}: {e}") from None
    return with_fixed_agents(cfg, info)


def build_algorithm(cfg: RunConfig, updates: int | None = None):
    """The run's algorithm object, built once (``updates`` defaults to :func:`total_updates`)."""
    from trustmarl.algos import make_algorithm

    algo = make_algorithm(cfg, total_updates=updates or total_updates(cfg), env=env_info(cfg))
    if cfg.env_blocks > 1:
        algo.check_env_blocks(cfg.env_blocks)
    return algo


def has_bulk(algo) -> bool:
    """Whether the algorithm's state holds bulky data (replay buffers): :meth:`Algorithm.split_bulk` is its own."""
    from trustmarl.algos.base import Algorithm

    return type(algo).split_bulk is not Algorithm.split_bulk


def make_backend(cfg: RunConfig, algo):
    """The backend for ``cfg``'s environment kind (host backends start their workers in ``init``/``resume``)."""
    return HostBackend(cfg, algo) if env_kind(cfg.env.name) == "host" else JaxBackend(cfg, algo)


class _Chunks:
    """Jitted ``vmap``-over-seeds of ``lax.scan`` over ``length`` updates, compiled once per run.

    ``chunk(state, n)`` runs the first ``n <= length`` updates; the others are skipped by a ``lax.cond``
    on an unbatched flag, so a shorter chunk reuses the same program instead of compiling a second
    one (tens of seconds on CPU). Metrics come back ``[seeds, n, ...]``. ``donate``: the input state's
    arrays are handed to the program, which updates them in place (a state with replay buffers is
    then held once in memory, not twice); the caller's input is deleted.
    """

    def __init__(self, algo, length: int, donate: bool = False, mesh=None, blocks: int = 1):
        self.algo, self.length = algo, int(length)
        update = self.algo.update
        if blocks > 1:
            part = block_algorithm(algo, blocks)
            update = lambda s: (lambda out: (out[0], block_metrics(out[1])))(part.update(s))  # noqa: E731

        def one_seed(state, n):
            def body(s, i):
                skip = lambda s: (s, _zeros_like(jax.eval_shape(lambda x: update(x)[1], s)))  # noqa: E731
                return jax.lax.cond(i < n, update, skip, s)

            return jax.lax.scan(body, state, jnp.arange(self.length))

        if blocks > 1:
            self._fn = jax.jit(_over_blocks(one_seed, env_axes(algo, blocks), blocks, mesh),
                               donate_argnums=(0,) if donate else ())
            return
        fn = jax.vmap(one_seed, in_axes=(0, None), axis_name=SEED_AXIS)  # named: see uniform_over_seeds
        if mesh is not None:  # each device: the vmap over its own seeds (P("seeds") splits every leaf's seed axis)
            seeds = jax.sharding.PartitionSpec("seeds")
            fn = jax.shard_map(fn, mesh=mesh, in_specs=(seeds, jax.sharding.PartitionSpec()), out_specs=seeds,
                                 check_vma=False)  # no collectives inside: nothing varies across devices but the data
        self._fn = jax.jit(fn, donate_argnums=(0,) if donate else ())

    def __call__(self, state, n: int):
        if not 1 <= n <= self.length:
            raise ValueError(f"a chunk runs 1..{self.length} updates, got {n}")
        state, metrics = self._fn(state, jnp.asarray(n, jnp.int32))
        return state, jax.tree.map(lambda m: m[:, :n], metrics)


def _over_blocks(one_seed, axes, blocks: int, mesh):
    """``one_seed(state, n)`` (one seed, one block's env copies) as a program on seed-batched full states: on each
    device the ``blocks / devices`` local blocks are a ``vmap`` named ``env_block`` (env axes reshaped to
    ``[local blocks, num_envs / blocks]``; parameters, optimiser states and counters broadcast, and taken back from
    block 0, since the all-reduced gradients keep them equal), inside a ``vmap`` over seeds, inside a
    ``shard_map`` over the ``envs`` mesh axis when there is a mesh."""
    devices = 1 if mesh is None else mesh.size
    local = blocks // devices
    in_axes = jax.tree.map(lambda a: None if a < 0 else 0, axes)

    def split(x, a):
        if a < 0:
            return x
        return jnp.moveaxis(x.reshape(x.shape[:a] + (local, x.shape[a] // local) + x.shape[a + 1:]), a, 0)

    def merge(x, a):
        if a < 0:
            return x[0]
        x = jnp.moveaxis(x, 0, a)
        return x.reshape(x.shape[:a] + (x.shape[a] * x.shape[a + 1],) + x.shape[a + 2:])

    def seed_blocks(state, n):
        state, metrics = jax.vmap(one_seed, in_axes=(in_axes, None), axis_name=ENV_BLOCK_AXIS)(
            jax.tree.map(split, state, axes), n)
        return jax.tree.map(merge, state, axes), jax.tree.map(lambda m: m[0], metrics)

    fn = jax.vmap(seed_blocks, in_axes=(0, None), axis_name=SEED_AXIS)
    if mesh is not None:
        P = jax.sharding.PartitionSpec
        specs = block_specs(axes)
        fn = jax.shard_map(fn, mesh=mesh, in_specs=(specs, P()), out_specs=(specs, P()),
                           check_vma=False)  # replicated outputs are equal on every device: all-reduced gradients
    return fn


def _zeros_like(shapes):
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)


class JaxBackend:
    """JAX-native environments: the whole update (rollout and learning) is one jitted program."""

    kind = "jax"

    def __init__(self, cfg: RunConfig, algo):
        self.cfg, self.algo = cfg, algo
        self._chunks = None
        self._mesh = False  # the seed mesh, built on first use (training only: evaluation runs on one device)

    @property
    def mesh(self):
        if self._mesh is False:
            d = resolve_devices(self.cfg)
            self._mesh = env_mesh(d) if self.cfg.env_blocks > 1 else seed_mesh(d)
        return self._mesh

    def _place(self, state):
        """``state`` on this run's devices: seed axis (``shard_seeds``) or env axes (``env_blocks``) split."""
        if self.cfg.env_blocks > 1:
            return shard_blocks(state, self.mesh, env_axes(self.algo, self.cfg.env_blocks))
        return shard_seeds(state, self.mesh)

    def init(self):
        if self.cfg.env_blocks > 1:
            return init_blocks(self.algo, seed_keys(self.cfg), self.mesh, env_axes(self.algo, self.cfg.env_blocks))
        return init_sharded(self.algo, seed_keys(self.cfg), self.mesh)

    def template(self):
        return jax.eval_shape(jax.vmap(self.algo.init), seed_keys(self.cfg))

    def resume(self, state, update: int):
        # the env states are part of the checkpoint: training continues bitwise (on any device count:
        # checkpoints hold host arrays, placed here on this run's devices); data collected before training is
        # not in checkpoints: it is regenerated from its key (OffPolicy.restore_pretrain)
        if self.algo.pretrain_request() is not None:
            state = jax.jit(jax.vmap(self.algo.restore_pretrain))(state)
        return self._place(state)

    def run(self, state, n: int):
        if self._chunks is None:
            self._chunks = _Chunks(self.algo, self.cfg.chunk_updates, donate=has_bulk(self.algo), mesh=self.mesh,
                                   blocks=self.cfg.env_blocks)
        return self._chunks(state, n)

    def evaluate(self, state, episodes: int, seed: int | None = None, deterministic: bool = True) -> dict:
        """``episodes`` fresh episodes per seed with each seed's policy (see :func:`run_episodes`); the
        episodes depend only on ``seed`` (default ``cfg.seed + 1``), so repeated evaluations are comparable."""
        seed = self.cfg.seed + 1 if seed is None else int(seed)
        k_env, k_act = jax.random.split(jax.random.PRNGKey(seed))
        stepper = JaxStepper(self.algo.env, self.cfg.num_seeds, episodes, k_env)
        return run_episodes(self.algo, jax.vmap(self.algo.policy_view)(state), stepper, k_act, deterministic)

    def close(self) -> None:
        pass


class HostBackend:
    """Host envs: a :class:`HostTrainer` on a :class:`HostVecEnv` of ``num_seeds * num_envs`` copies.

    Restored runs start fresh episodes (seeded from ``cfg.seed`` and the update), so a resumed host run
    is not bitwise-equal to an uninterrupted one; learner state and counters are restored exactly.
    Evaluation uses a second vec env of ``num_seeds * episodes`` copies, started on first use.
    """

    kind = "host"

    def __init__(self, cfg: RunConfig, algo):
        self.cfg, self.algo = cfg, algo
        self.trainer = None  # the training workers start with init() or resume()
        self._eval_vec = None

    def _vec_env(self, copies: int, seed: int):
        """``copies`` copies of the env; fixed agents (run key ``fixed_agents``) act in the returned vec env."""
        vec = host_registry.make_vec_env(self.cfg.env.name, self.cfg.env.params, copies, seed)
        wrap = getattr(self.algo.env, "wrap_vec", None)
        return vec if wrap is None else wrap(vec, seed)

    def _start(self, update: int):
        from trustmarl.rollout.host import HostTrainer, env_seed

        copies = self.cfg.num_seeds * self.algo.num_envs
        vec = self._vec_env(copies, env_seed(self.cfg.seed, update))
        try:
            self.trainer = HostTrainer(self.algo, vec, self.cfg.num_seeds)
        except BaseException:
            vec.close()
            raise
        return self.trainer

    def init(self):
        return self._start(0).init(seed_keys(self.cfg))

    def template(self):
        from trustmarl.rollout.host import state_template

        return state_template(self.algo, self.cfg.num_seeds)

    def resume(self, state, update: int):
        from trustmarl.rollout.host import env_seed

        trainer = self._start(update)
        if self.algo.pretrain_request() is not None:  # regenerated, not in checkpoints
            state = trainer.pretrain(state, self.cfg.seed, count=False)
        return trainer.reset_envs(state, env_seed(self.cfg.seed, update))

    def run(self, state, n: int):
        return self.trainer.run(state, n)

    def evaluate(self, state, episodes: int, seed: int | None = None, deterministic: bool = True) -> dict:
        """As :meth:`JaxBackend.evaluate`; copy ``s * episodes + i`` plays its first episode seeded by
        ``episode_seed(seed, copy, 0)`` (see :class:`~trustmarl.envs.host.HostVecEnv`)."""
        seed = self.cfg.seed + 1 if seed is None else int(seed)
        copies = self.cfg.num_seeds * episodes
        if self._eval_vec is None or self._eval_vec.num_envs != copies:
            if self._eval_vec is not None:
                self._eval_vec.close()
            self._eval_vec = self._vec_env(copies, seed)
        stepper = HostStepper(self._eval_vec, self.cfg.num_seeds, seed=seed)
        key = jax.random.PRNGKey(seed)
        return run_episodes(self.algo, jax.vmap(self.algo.policy_view)(state), stepper, key, deterministic)

    def close(self) -> None:
        try:
            if self.trainer is not None:
                self.trainer.close()
                self.trainer = None
        finally:
            if self._eval_vec is not None:
                self._eval_vec.close()
                self._eval_vec = None


def as_lists(result: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-seed evaluation arrays as plain lists (JSON)."""
    return {k: np.asarray(v, np.float64).tolist() for k, v in result.items()}
