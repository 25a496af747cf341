"""`trustmarl eval RUN_DIR --render` writes a GIF of one episode, headless."""

from __future__ import annotations

import numpy as np
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
    assert "(7 frames" in out and "written to" in out  # the reset state and 6 steps
    img = Image.open(gif)
    frames = []
    for i in range(img.n_frames):
        img.seek(i)
        frames.append(np.asarray(img.convert("RGB")))
    assert 2 <= len(frames) <= 7  # Pillow merges identical consecutive frames
    assert frames[0].shape == (320, 320, 3)
    assert any(np.abs(f.astype(int) - frames[0]).sum() > 0 for f in frames[1:])  # the agents move


def test_render_on_an_env_without_render_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "mappo", "matrix/proposition1", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--render"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rendering is not supported" in err[0]
