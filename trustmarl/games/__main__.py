"""``python -m trustmarl.games [--tier smoke|cpu|full] [--out DIR]``: reproduce the matrix-game results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trustmarl.games.reproduce import TIERS, reproduce_matrix_games


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trustmarl.games",
        description="Reproduce Table 1, Figure 4 and Figure 9 of Wen et al. 2021 (MATRL) on exact 2x2 payoffs.",
    )
    parser.add_argument("--tier", choices=tuple(TIERS), default="cpu", help="smoke: 20 games per family; cpu: 200 (the paper's protocol); full: cpu + 1000 games")
    parser.add_argument("--out", type=Path, default=Path("runs/matrl_matrix_games"), help="output folder")
    args = parser.parse_args(argv)
    numbers = reproduce_matrix_games(args.out, args.tier)
    print((args.out / "table1.md").read_text())
    print(f"wrote {', '.join(numbers['files'])} in {numbers['seconds']['total']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
