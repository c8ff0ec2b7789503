#!/usr/bin/env python
"""Paired comparison of csp_benchmark runs on the same test rows.

For each OTHER run against BASE: over the rows both runs match (gated), the mean difference of the
per-row RMS (OTHER - BASE) with its standard error, and how many rows only one of them matches.
Runs with the same rows and seed share most of their noise, so this resolves differences that the
two RMSE figures alone (standard error ~0.004 on 500 Perov-5 rows) cannot.

Usage: python scripts/paired_rms.py BASE_DIR OTHER_DIR [OTHER_DIR ...]   (folders with metrics.rows.csv)
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path


def matched_rms(folder: str) -> dict[str, float]:
    """material id -> RMS of the rows the run matched (gated)."""
    out = {}
    with open(Path(folder) / "metrics.rows.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                value = float(row["best_rms_gated"])
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                out[row["material_id"]] = value
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    base = matched_rms(argv[0])
    for other_dir in argv[1:]:
        other = matched_rms(other_dir)
        both = sorted(set(base) & set(other))
        diffs = [other[k] - base[k] for k in both]
        mean = sum(diffs) / len(diffs)
        se = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5
        print(f"{other_dir} vs {argv[0]}: matched in both {len(both)}, mean RMS difference {mean:+.4f} ± {se:.4f} "
              f"(SE); matched only by base {len(set(base) - set(other))}, only by other {len(set(other) - set(base))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
