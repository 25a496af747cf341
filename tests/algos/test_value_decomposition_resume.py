"""A recurrent QMIX run (GRU agents, burn-in, TD(lambda)) stopped after one chunk and resumed from its checkpoint
ends bit for bit equal to an uninterrupted run: replay buffer with the stored hidden states, target networks,
the acting hidden state carried across the chunk boundary, and the metrics rows (slow: ~90 s of CPU, three
compilations of the recurrent update; the feed-forward QMIX resume is in the registry-wide contract test)."""

from __future__ import annotations

import math

import pytest
from test_contract import overrides, resume_is_bitwise

from trustmarl.experiment.config import build_config


@pytest.mark.slow
def test_recurrent_qmix_resume_is_bitwise(tmp_path):
    cfg = build_config("qmix", "mpe/simple_spread", overrides(
        "qmix", total_steps=48, chunk_updates=2, num_seeds=2, checkpoint_every=1, eval_every=24, eval_episodes=2,
        **{"algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 3, "algo.burn_in": 1, "algo.td_lambda": 0.8,
           "algo.mixer_embed": 4, "algo.hypernet_hidden": 8, "algo.epsilon_anneal_end": 40}))
    _, s_full, rows_full = resume_is_bitwise(cfg, tmp_path)
    assert any(abs(float(x)) > 0 for x in s_full.buffer.steps.data["hidden"][0].reshape(-1)[:1000])  # hidden states stored
    assert len(rows_full) == 6
    assert any(math.isfinite(r.get("loss/td", math.nan)) for r in rows_full)  # it learned from windows
