"""One entry point for the matrix-game results of Wen et al. 2021: Table 1, Figure 4 and Figure 9."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trustmarl.games.figures import figure4, figure9
from trustmarl.games.table1 import PAPER_TABLE1, SPEC_TABLE1, table1, table1_markdown

TIERS = {
    # games per family, iterations of the Figure 4 run, extra table over 1000 games per family
    "smoke": {"n_games": 20, "figure4_iters": 1000, "extra_1000": False},
    "cpu": {"n_games": 200, "figure4_iters": 3000, "extra_1000": False},
    "full": {"n_games": 200, "figure4_iters": 3000, "extra_1000": True},
}


def reproduce_matrix_games(out_dir: Path, tier: str = "smoke") -> dict:
    """Reproduce Table 1, Figure 4 and Figure 9 of Wen et al. 2021 on exact payoffs.

    Writes ``table1.md``, ``table1.json``, ``figure4.png`` and ``figure9.png`` into ``out_dir`` and returns
    the numbers. Tiers: ``smoke`` (20 games per family, seconds), ``cpu`` (the paper's protocol: 200
    games per family, 1000 iterations), ``full`` (``cpu`` plus the same table over 1000 games per
    family, the count the paper's caption states).
    """
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; expected one of {tuple(TIERS)}")
    settings = TIERS[tier]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = table1(n_games=settings["n_games"])
    markdown = table1_markdown(result, f"Table 1 ({tier} tier: {settings['n_games']} games per family)")
    extra = None
    if settings["extra_1000"]:
        extra = table1(n_games=1000)
        markdown += "\n" + table1_markdown(extra, "Table 1 over 1000 games per family (seeds 0-999)")
    (out_dir / "table1.md").write_text(markdown)
    table_seconds = time.perf_counter() - start
    fig4 = figure4(out_dir / "figure4.png", n_iters=settings["figure4_iters"])
    fig9 = figure9(out_dir / "figure9.png")
    numbers = {
        "tier": tier,
        "table1": result,
        "table1_1000_games": extra,
        "paper_table1": PAPER_TABLE1,
        "spec_table1": SPEC_TABLE1,
        "figure4": fig4,
        "figure9": fig9,
        "seconds": {"table1": table_seconds, "total": time.perf_counter() - start},
        "files": [str(out_dir / n) for n in ("table1.md", "table1.json", "figure4.png", "figure9.png")],
    }
    (out_dir / "table1.json").write_text(json.dumps(numbers, indent=2, sort_keys=True))
    return numbers
