#!/usr/bin/env python
"""EMA on vs off: two identical training runs (same seed, data, steps) that differ only in --no-ema.

The validation loss is deterministic (fixed noise per validation batch), so the two curves are
directly comparable; EMA runs validate with the EMA weights.

Usage: python scripts/compare_ema.py --train T.csv --val V.csv --out runs/ema [--steps 1500] [train flags...]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def _val_curve(run: Path) -> list[tuple[int, float]]:
    rows = []
    for log in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(log) as fh:
            for r in csv.DictReader(fh):
                if r.get("val_loss"):
                    rows.append((int(r["step"]), float(r["val_loss"])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", nargs="+", required=True)
    parser.add_argument("--val", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=1500)
    args, extra = parser.parse_known_args()
    from diffcsp_pp.folder import ModelFolder

    out = Path(args.out)
    curves = {}
    for name, flags in (("ema", []), ("no_ema", ["--no-ema"])):
        run = out / name
        if not ModelFolder(run).file(ModelFolder.WEIGHTS).exists():
            cmd = [sys.executable, "-m", "diffcsp_pp.cli.main", "train", "--train", *args.train, "--val", *args.val,
                   "--out", str(run), "--max-steps", str(args.steps), "--quiet", *flags, *extra]
            subprocess.run(cmd, check=True)
        curves[name] = _val_curve(run)
    summary = {name: {"final_step": c[-1][0], "final_val_loss": c[-1][1], "best_val_loss": min(v for _, v in c),
                      "curve": c} for name, c in curves.items()}
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in summary.items()}, indent=1))
    (out / "ema_comparison.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
