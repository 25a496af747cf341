"""`trustmarl eval RUN_DIR --render` writes a GIF of one episode, headless."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from trustmarl.experiment.cli import main

TINY = ["total_steps=128", "algo.num_envs=4", "algo.rollout_len=8", "algo.minibatches=1", "algo.epochs=1",
        "algo.hidden_sizes=[16]", "--no-progress"]


def test_eval_render_writes_an_episode_gif(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "mappo", "mpe/simple_spread", "env.max_cycles=6", *TINY, "--out", str(run)]) == 0
    gif = tmp_path / "ep.gif"
    assert main(["eval", str(run), "--episodes", "2", "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    frames = _gif_frames(gif)
    # the reset state and 6 steps; the message states what the file holds
    assert "episode of 6 steps (return " in out and f"written to {gif}: 7 frames at 10 fps" in out, out
    assert len(frames) == 7  # the step/return overlay differs on every frame: none is merged
    assert frames[0].shape == (320, 320, 3)
    assert any(np.abs(f.astype(int) - frames[0]).sum() > 0 for f in frames[1:])  # the agents move
    assert (frames[3][2:14, 2:60] < 80).any() and (frames[3][2:14, 2:60] > 200).any()  # the overlay's text box

    assert main(["eval", str(run), "--render", str(tmp_path / "ep.avi")]) == 2
    assert "must end in .gif or .mp4" in capsys.readouterr().err


def test_render_on_an_env_without_render_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "mappo", "matrix/proposition1", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--render"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rendering is not supported" in err[0] and "matrix/proposition1" in err[0]


# ---- host environments (MaMuJoCo through EGL/OSMesa, SISL through pygame) --------------------------

def _gif_frames(path) -> list[np.ndarray]:
    img = Image.open(path)
    frames = []
    for i in range(img.n_frames):
        img.seek(i)
        frames.append(np.asarray(img.convert("RGB")))
    return frames


def _offscreen_gl_or_skip() -> None:
    """Skip when this machine has no offscreen OpenGL (MuJoCo needs EGL or OSMesa to render headless)."""
    pytest.importorskip("gymnasium_robotics")
    probe = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>');"
             "r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render()")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode != 0:
        pytest.skip(f"no offscreen OpenGL backend (MUJOCO_GL={env['MUJOCO_GL']}) on this machine")


def test_eval_render_mamujoco_halfcheetah(tmp_path, capsys):
    """A MaMuJoCo run renders headless through the CLI: one frame per step plus the reset, the cheetah moves."""
    _offscreen_gl_or_skip()
    run = tmp_path / "run"
    args = ["train", "mappo", "mamujoco/halfcheetah_2x3", "env.max_episode_steps=12", "env.num_workers=0", *TINY]
    assert main([*args, "--out", str(run)]) == 0
    assert main(["eval", str(run), "--episodes", "1", "--render"]) == 0
    assert "13 frames at" in capsys.readouterr().out
    frames = _gif_frames(run / "episode.gif")
    assert frames[0].shape == (320, 320, 3)  # MuJoCo's 480x480 shrunk to 320
    assert frames[0].std() > 10  # a scene, not a blank image
    assert max(np.abs(f.astype(int) - frames[0]).sum() for f in frames[1:]) > 0


def test_render_sisl_multiwalker_and_pursuit(tmp_path):
    """SISL envs (pygame) render headless from an untrained policy; the frame count equals the steps + 1."""
    pytest.importorskip("pettingzoo.sisl")
    import jax

    from trustmarl.algos import make_algorithm
    from trustmarl.envs.host import registry as host_registry
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.render import render_host_episode

    for name, shape in (("sisl/multiwalker", (213, 320, 3)), ("sisl/pursuit", (320, 320, 3))):
        params = {"max_cycles": 5}
        cfg = build_config("mappo", name, {"algo.hidden_sizes": [8], "env.max_cycles": 5, "algo.num_envs": 1})
        algo = make_algorithm(cfg, total_updates=1, env=host_registry.probe(name, params))
        view = jax.tree.map(lambda x: x[None], algo.policy_view(_init_state(algo)))  # a seed axis of 1
        factory = host_registry.make_factory(name, params).rendering()
        out = render_host_episode(algo, factory, view, jax.random.PRNGKey(0), tmp_path / f"{name[5:]}.gif")
        assert out["frames"] == 6 and out["steps"] == 5 and np.isfinite(out["return"])
        frames = _gif_frames(out["path"])
        assert frames[0].shape == shape and frames[0].std() > 10


def _init_state(algo):
    import jax

    from trustmarl.rollout.host import placeholder_timestep

    return algo.init_state(jax.random.PRNGKey(0), placeholder_timestep(algo.env, (algo.num_envs,)), None)


def test_render_host_env_without_render_mode_is_a_clear_error(tmp_path, capsys):
    """A PettingZoo env that does not take render_mode fails with one line naming the problem (exit 2)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "rollout"))
    run = tmp_path / "run"
    args = ["train", "mappo", "pettingzoo:toy_envs:guess_env", "env.num_workers=0", *TINY]
    assert main([*args, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--render"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot render" in err[0] and "render_mode" in err[0]


def test_write_gif_keeps_long_episodes_small(tmp_path):
    """1000 frames of 480x640 keep every 4th (plus the last) at <= 320 px, and the delay grows 4x."""
    from trustmarl.experiment.render import write_gif

    frames = [np.full((480, 640, 3), i % 256, np.uint8) for i in range(1000)]
    path = write_gif(frames, tmp_path / "long.gif", fps=20, max_frames=250)
    img = Image.open(path)
    assert img.size == (320, 240)
    assert img.info["duration"] == 200  # 4 frames of 50 ms
    kept = _gif_frames(path)
    assert len(kept) == 251  # frames 0, 4, ..., 996 and the last one (999)
    assert kept[-1][0, 0, 0] == 999 % 256 and kept[1][0, 0, 0] == 4


def test_overlay_states_step_and_return():
    from trustmarl.experiment.render import overlay

    blank = np.full((60, 200, 3), 255, np.uint8)
    a, b = overlay(blank, 3, -1.5), overlay(blank, 4, -1.5)
    assert a.shape == blank.shape and (a[:15, :150] < 100).any() and (a[20:] == 255).all()  # text top-left only
    assert (a != b).any()  # another step, another label


def test_mp4_needs_imageio_ffmpeg_and_writes_every_frame(tmp_path, monkeypatch):
    """Without imageio[ffmpeg]: one line naming the install command. With it (a stand-in here): every frame,
    at the env's frame rate, padded to even sides for H.264."""
    import importlib.util
    import types

    from trustmarl.experiment import render

    frames = [np.full((213, 320, 3), i, np.uint8) for i in range(30)]
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        with pytest.raises(render.RenderError, match=r"pip install 'imageio\[ffmpeg\]'"):
            render.write_episode(frames, tmp_path / "ep.mp4", fps=15)
    seen = {}
    v2 = types.SimpleNamespace(mimwrite=lambda path, fr, fps, macro_block_size: seen.update(path=path, frames=fr, fps=fps))
    monkeypatch.setitem(sys.modules, "imageio", types.SimpleNamespace(v2=v2))
    monkeypatch.setitem(sys.modules, "imageio.v2", v2)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", types.ModuleType("imageio_ffmpeg"))
    out = render.write_episode(frames, tmp_path / "ep.mp4", fps=15)
    assert out["frames"] == 30 and out["fps"] == 15 and out["stride"] == 1
    assert len(seen["frames"]) == 30 and seen["frames"][0].shape == (214, 320, 3) and seen["fps"] == 15
