"""A recurrent QMIX run (GRU agents, burn-in, TD(lambda)) stopped after one chunk and resumed from its checkpoint
ends bit for bit equal to an uninterrupted run: replay buffer with the stored hidden states, target networks,
the acting hidden state carried across the chunk boundary, and the metrics rows (slow: ~90 s of CPU, three
compilations of the recurrent update; the feed-forward QMIX resume is in the registry-wide contract test)."""

from __future__ import annotations

import math

import pytest
from test_contract import bitwise_equal, overrides

from trustmarl.experiment.config import build_config
from trustmarl.experiment.logger import read_jsonl
from trustmarl.experiment.runner import load_run_state, train


@pytest.mark.slow
def test_recurrent_qmix_resume_is_bitwise(tmp_path):
    cfg = build_config("qmix", "mpe/simple_spread", overrides(
        "qmix", total_steps=48, chunk_updates=2, num_seeds=2, checkpoint_every=1, eval_every=24, eval_episodes=2,
        **{"algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 3, "algo.burn_in": 1, "algo.td_lambda": 0.8,
           "algo.mixer_embed": 4, "algo.hypernet_hidden": 8, "algo.epsilon_anneal_end": 40}))
    kw = dict(progress=False, tensorboard=False)
    full = train(cfg, tmp_path / "full", **kw)
    train(cfg, tmp_path / "part", stop_after_chunks=1, **kw)
    resumed = train(None, tmp_path / "part", resume=True, **kw)
    assert full["status"] == resumed["status"] == "completed" and full["updates"] == 6
    s_full, s_part = load_run_state(tmp_path / "full")[2], load_run_state(tmp_path / "part")[2]
    assert bitwise_equal(s_full, s_part)
    assert any(abs(float(x)) > 0 for x in s_full.buffer.steps.data["hidden"][0].reshape(-1)[:1000])  # hidden states stored
    rows_full, rows_part = (read_jsonl(tmp_path / r / "metrics.jsonl") for r in ("full", "part"))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    same = lambda x, y: x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))  # noqa: E731
    assert len(rows_full) == len(rows_part) == 6
    assert all(r1.keys() == r2.keys() and all(same(r1[k], r2[k]) for k in r1) for r1, r2 in zip(strip(rows_full), strip(rows_part)))
    assert any(math.isfinite(r.get("loss/td", math.nan)) for r in rows_full)  # it learned from windows
