"""Record an episode of a trained policy and write it as an animated GIF (Pillow) or an MP4 video
(``imageio[ffmpeg]``, when installed), headless; every frame shows the step and the team return so far.

A JAX-native environment renders by implementing ``render(env_state) -> uint8 [H, W, 3]``; host
environments render through their own ``render()`` in ``rgb_array`` mode.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from trustmarl.envs.base import RenderError  # noqa: F401  (raised here; defined with the env contract)


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


class _Returns:
    """A stepper that also keeps the episode's team return so far (the mean over agents of the rewards)."""

    def __init__(self, stepper):
        self.stepper, self.shape, self.value, self.done = stepper, stepper.shape, 0.0, False

    def reset(self):
        self.value, self.done = 0.0, False
        return self.stepper.reset()

    def step(self, actions):
        ts = self.stepper.step(actions)
        if not self.done:
            self.value += float(np.mean(np.asarray(ts.reward, np.float64).reshape(-1, np.shape(ts.reward)[-1])[0]))
            self.done = bool(np.ravel(np.asarray(ts.terminated) | np.asarray(ts.truncated))[0])
        return ts

    def frame(self):
        return self.stepper.frame()


def overlay(frame: np.ndarray, step: int, ret: float) -> np.ndarray:
    """``frame`` with "step T  return R" in its top-left corner (black on a white box)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(np.asarray(frame, dtype=np.uint8)[..., :3]))
    draw = ImageDraw.Draw(img)
    text = f"step {step}  return {ret:.4g}"
    left, top, right, bottom = draw.textbbox((4, 3), text)
    draw.rectangle([left - 3, top - 2, right + 3, bottom + 2], fill=(255, 255, 255))
    draw.text((4, 3), text, fill=(0, 0, 0))
    return np.asarray(img)


def _record(algo, view, stepper, key: jax.Array, deterministic: bool) -> tuple[list[np.ndarray], float]:
    """One episode through the shared episode loop, a frame after the reset and after every step, each with
    the step and the return so far drawn on it."""
    from trustmarl.algos.evaluation import run_episodes

    frames: list[np.ndarray] = []
    tracked = _Returns(stepper)
    result = run_episodes(algo, view, tracked, key, deterministic,
                          on_step=lambda t: frames.append(overlay(tracked.frame(), t, tracked.value)))
    return frames, float(result["return"][0])


def write_episode(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> dict[str, Any]:
    """Write ``frames`` as a GIF (``.gif``) or an MP4 video (``.mp4``, needs ``imageio[ffmpeg]``); returns what
    the file holds: ``frames`` written, ``fps`` and ``stride`` (every ``stride``-th recorded frame)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        write_mp4(frames, path, fps)
        return {"path": str(path), "frames": len(frames), "fps": float(fps), "stride": 1}
    if suffix != ".gif":
        raise RenderError(f"cannot write {str(path)!r}: the file name must end in .gif or .mp4")
    out = write_gif(frames, path, fps=fps)
    from PIL import Image

    with Image.open(out) as img:
        written = int(getattr(img, "n_frames", 1))
        delay = img.info.get("duration") or 100
    return {"path": str(out), "frames": written, "fps": 1000.0 / delay, "stride": max(1, -(-len(frames) // 250))}


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` as an H.264 MP4 with ``imageio`` and its ffmpeg plugin (``pip install 'imageio[ffmpeg]'``);
    :class:`RenderError` naming the install command when they are missing."""
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise RenderError("writing an MP4 needs imageio with ffmpeg: pip install 'imageio[ffmpeg]' "
                          "(or name a .gif file)") from None
    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = np.asarray(frames[0]).shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))  # H.264 (yuv420p) needs even sides
    iio.mimwrite(path, [np.pad(np.asarray(f, np.uint8)[..., :3], pad, mode="edge") for f in frames], fps=fps,
                 macro_block_size=1)
    return path


def render_jax_episode(algo, view, key: jax.Array, path: str | Path, deterministic: bool = True, fps: int = 10) -> dict:
    """Play one episode of a JAX-native env with the policy ``view`` (leading seed axis of 1) and write a
    GIF; :class:`RenderError` if the env cannot render."""
    from trustmarl.algos.evaluation import JaxStepper

    env = algo.env
    if not hasattr(env, "render"):
        raise RenderError(f"environment {type(env).__name__} does not implement render(state)")
    k_env, k_act = jax.random.split(key)
    stepper = JaxStepper(env, 1, 1, k_env, auto_reset=False)  # keep the episode's last state
    frames, total = _record(algo, view, stepper, k_act, deterministic)
    return {**write_episode(frames, path, fps), "steps": len(frames) - 1, "return": total}


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


def headless() -> None:
    """Choose offscreen backends when no display is attached (before the first frame is drawn).

    MuJoCo: ``MUJOCO_GL=egl`` (set ``MUJOCO_GL=osmesa`` yourself for software rendering); pygame
    (SISL): ``SDL_VIDEODRIVER=dummy``. Values already set are left alone.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def render_host_episode(algo, factory: Any, view, key: jax.Array, path: str | Path, deterministic: bool = True,
                        seed: int = 0) -> dict:
    """Record one episode of the host env made by ``factory`` (which must accept ``render_mode``) as a GIF,
    acting with the policy ``view`` (leading seed axis of 1)."""
    from trustmarl.algos.evaluation import RenderStepper

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
                frames, total = _record(algo, view, RenderStepper(env, seed=seed), key, deterministic)
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
    return {**write_episode(frames, path, _render_fps(env)), "steps": len(frames) - 1, "return": total}


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
