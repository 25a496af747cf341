"""Record an episode of a trained policy and write it as an animated GIF (headless, Pillow only).

A JAX-native environment renders by implementing ``render(env_state) -> uint8 [H, W, 3]``; host
environments render through their own ``render()`` in ``rgb_array`` mode.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class RenderError(RuntimeError):
    """An environment that cannot render headless (no rgb_array mode, no OpenGL backend, ...)."""


def draw_circles(pos, radius: Sequence[float], colors: Sequence[tuple], size: int = 320, extent: float = 1.5) -> np.ndarray:
    """Draw filled circles at world positions ``pos`` [k, 2] in the square [-extent, extent]^2."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    scale = size / (2 * extent)
    for (x, y), r, c in zip(np.asarray(pos, dtype=float), radius, colors):
        cx, cy = (x + extent) * scale, (extent - y) * scale  # y axis up
        rr = max(r * scale, 1.0)
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=tuple(c), outline=(0, 0, 0))
    return np.asarray(img)


def _seed_params(state, seed_index: int):
    """Seed ``seed_index``'s actor parameters (states of multi-seed runs have a leading seed axis)."""
    if np.ndim(state.update) == 1:
        return jax.tree.map(lambda x: x[seed_index], state.actor_params)
    return state.actor_params


def _one(x):
    return jax.tree.map(lambda y: jnp.asarray(y)[None], x)  # add the [E=1] axis


def record_episode(algo, state, key: jax.Array, deterministic: bool = True, seed_index: int = 0):
    """Play one episode of the JAX-native env with the policy of seed ``seed_index``.

    Returns ``(env_states, team_return)``: the env state at every step (reset included).
    Recurrent actors carry their hidden state from step to step (zeros at the reset).
    """
    env = algo.env
    params = _seed_params(state, seed_index)
    k_reset, key = jax.random.split(key)
    env_state, ts = env.reset(k_reset)

    @jax.jit
    def step(env_state, ts, hidden, key):
        k_act, k_env = jax.random.split(key)
        actions, hidden = algo.eval_actions(params, hidden, _one(ts.obs), _one(ts.avail), _one(ts.done), k_act, deterministic)
        actions = jax.tree.map(lambda a: a[0], actions)
        return env._step(k_env, env_state, actions), hidden  # no auto-reset: the episode's last state is kept

    states, total = [env_state], 0.0
    hidden = algo.init_hidden((1,))
    for _ in range(env.max_episode_steps):
        key, k = jax.random.split(key)
        (env_state, ts), hidden = step(env_state, ts, hidden, k)
        states.append(env_state)
        total += float(np.mean(np.asarray(ts.reward)))
        if bool(ts.done):
            break
    return states, total


def record_host_episode(algo, env: Any, state, key: jax.Array, deterministic: bool = True, seed_index: int = 0,
                        seed: int = 0):
    """Play one episode of a host env built with ``render_mode="rgb_array"``; ``(frames, team_return)``.

    ``env`` is the raw PettingZoo Parallel env; a frame is taken after the reset and after every step.
    """
    from trustmarl.envs.host.pettingzoo_adapter import PettingZooAdapter

    adapter = PettingZooAdapter(env)
    params = _seed_params(state, seed_index)
    act = jax.jit(lambda h, o, av, d, k: algo.eval_actions(params, h, _one(o), _one(av), d, k, deterministic))
    step = adapter.reset(seed=seed)
    frames, total = [_frame(env)], 0.0
    hidden, done = algo.init_hidden((1,)), jnp.zeros((1,), bool)
    for t in range(algo.env.max_episode_steps):
        actions, hidden = act(hidden, step.obs, step.avail, done, jax.random.fold_in(key, t))
        step = adapter.step([np.asarray(a[0]) for a in jax.device_get(actions)])
        frames.append(_frame(env))
        total += float(np.mean(step.reward))
        if step.terminated or step.truncated:
            break
    return frames, total


def _frame(env: Any) -> np.ndarray:
    frame = env.render()
    if frame is None or np.ndim(frame) != 3:
        raise RenderError(f"{type(env).__name__}.render() returned {type(frame).__name__}, not an RGB array "
                          "(is render_mode='rgb_array' supported?)")
    return np.asarray(frame)


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10, max_frames: int = 250,
              max_side: int = 320) -> Path:
    """Write ``frames`` (uint8 ``[H, W, 3]``) as a looping GIF.

    Long episodes keep every k-th frame so that at most ``max_frames`` remain (the frame rate drops by k,
    so the GIF still plays in real time), and frames are shrunk to at most ``max_side`` pixels.
    """
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    stride = max(1, -(-len(frames) // max_frames))
    kept = list(frames[::stride])
    if stride > 1 and (len(frames) - 1) % stride:
        kept.append(frames[-1])  # always show how the episode ended
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for f in kept:
        img = Image.fromarray(np.asarray(f, dtype=np.uint8))
        if max(img.size) > max_side:
            scale = max_side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
        images.append(img)
    duration = max(20, int(round(1000 * stride / fps)))  # GIF delays are in 10 ms units; 20 ms is the usual floor
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


def render_episode(algo, state, key: jax.Array, path: str | Path, deterministic: bool = True, fps: int = 10) -> dict:
    """Record one episode of a JAX-native env and write a GIF; :class:`RenderError` if it cannot render."""
    env = algo.env
    if not hasattr(env, "render"):
        raise RenderError(f"environment {type(env).__name__} does not implement render(state)")
    states, total = record_episode(algo, state, key, deterministic)
    out = write_gif([env.render(s) for s in states], path, fps=fps)
    return {"path": str(out), "frames": len(states), "return": total}


def headless() -> None:
    """Choose offscreen backends when no display is attached (before the first frame is drawn).

    MuJoCo: ``MUJOCO_GL=egl`` (set ``MUJOCO_GL=osmesa`` yourself for software rendering); pygame
    (SISL): ``SDL_VIDEODRIVER=dummy``. Values already set are left alone.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def render_host_episode(algo, factory: Any, state, key: jax.Array, path: str | Path, deterministic: bool = True,
                        seed: int = 0) -> dict:
    """Record one episode of the host env made by ``factory`` (which must accept ``render_mode``) as a GIF."""
    headless()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The system font")  # pygame (SISL) font fallback
            env = factory()
    except TypeError as err:
        raise RenderError(f"the environment does not accept render_mode='rgb_array': {err}") from err
    if not callable(getattr(env, "render", None)):
        raise RenderError(f"{type(env).__name__} has no render() method")
    try:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The system font")
                frames, total = record_host_episode(algo, env, state, key, deterministic, seed=seed)
        except RenderError:
            raise
        except Exception as err:  # noqa: BLE001  OpenGL/pygame failures come as many types
            hint = ""
            if "OpenGL" in str(err) or "GL" in type(err).__name__ or "mjr" in str(err):
                hint = (f" (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: headless MuJoCo rendering needs EGL or OSMesa; "
                        "try MUJOCO_GL=egl or MUJOCO_GL=osmesa)")
            raise RenderError(f"rendering failed: {type(err).__name__}: {err}{hint}") from err
    finally:
        close = getattr(env, "close", None)
        if callable(close):
            close()
    out = write_gif(frames, path, fps=_render_fps(env))
    return {"path": str(out), "frames": len(frames), "return": total}


def _render_fps(env: Any, default: float = 20.0) -> float:
    """``metadata["render_fps"]`` of ``env`` or of the env it wraps (MaMuJoCo keeps it on its single-agent env)."""
    seen = 0
    while env is not None and seen < 5:
        fps = (getattr(env, "metadata", None) or {}).get("render_fps")
        if fps:
            return float(fps)
        env = getattr(env, "single_agent_env", None) or getattr(env, "env", None)
        seen += 1
    return default
