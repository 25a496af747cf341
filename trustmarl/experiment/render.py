"""Record an episode of a trained policy and write it as an animated GIF (headless, Pillow only).

A JAX-native environment renders by implementing ``render(env_state) -> uint8 [H, W, 3]``; host
environments render through their own ``render()`` in ``rgb_array`` mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from trustmarl.networks import dist_mode, dist_sample


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


def record_episode(algo, state, key: jax.Array, deterministic: bool = True, seed_index: int = 0):
    """Play one episode of the JAX-native env with the policy of seed ``seed_index``.

    Returns ``(env_states, team_return)``: the env state at every step (reset included).
    Recurrent actors carry their hidden state from step to step (zeros at the reset).
    """
    env = algo.env
    params = jax.tree.map(lambda x: x[seed_index], state.actor_params) if _has_seed_axis(state) else state.actor_params
    one = lambda x: jax.tree.map(lambda y: y[None], x)  # noqa: E731  add the [E=1] axis
    k_reset, key = jax.random.split(key)
    env_state, ts = env.reset(k_reset)

    @jax.jit
    def step(env_state, ts, hidden, key):
        k_act, k_env = jax.random.split(key)
        if getattr(algo, "recurrent", False):
            hidden, dists = algo.policy_step(params, hidden, one(ts.obs), one(ts.avail), one(ts.done))
        else:
            dists = algo.policy(params, one(ts.obs), one(ts.avail))
        if deterministic:
            actions = tuple(dist_mode(kd, d) for kd, d in zip(algo.kinds, dists))
        else:
            ks = jax.random.split(k_act, len(dists))
            actions = tuple(dist_sample(kd, d, kk) for kd, d, kk in zip(algo.kinds, dists, ks))
        actions = jax.tree.map(lambda a: a[0], algo.env_actions(actions))
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


def _has_seed_axis(state) -> bool:
    return np.ndim(state.update) == 1


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def render_episode(algo, state, key: jax.Array, path: str | Path, deterministic: bool = True, fps: int = 10) -> dict:
    """Record one episode and write a GIF; raises ``NotImplementedError`` if the env cannot render."""
    env = algo.env
    if not hasattr(env, "render"):
        raise NotImplementedError(f"environment {type(env).__name__} does not implement render(state)")
    states, total = record_episode(algo, state, key, deterministic)
    out = write_gif([env.render(s) for s in states], path, fps=fps)
    return {"path": str(out), "frames": len(states), "return": total}
