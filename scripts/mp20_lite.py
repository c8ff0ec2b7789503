#!/usr/bin/env python
"""Build the MP-20-lite training files from ../shared/data (see its README).

MP-20-lite train = val_biternary ∪ pilot_val ∪ pilot_train, deduplicated by material_id (8344 rows).
A validation split for the learning-rate schedule is needed and MP-20-lite has none, so a fixed 5 %
(seeded, by material_id) is held out of that union; the rest is the training file. pilot_test stays the
test set. Usage: python scripts/mp20_lite.py [--data ../shared/data] [--out data/mp20_lite]
Writes OUT/train.csv.gz and OUT/val.csv.gz (unchanged MP-20 rows and columns).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PARTS = ("val_biternary", "pilot_val", "pilot_train")


def main() -> int:
    parser = argparse.ArgumentParser()
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", default=str(root.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(root / "data" / "mp20_lite"))
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frames = [pd.read_csv(Path(args.data) / "mp_20" / f"{p}.csv.gz", index_col=0) for p in PARTS]
    union = pd.concat(frames).drop_duplicates("material_id").sort_values("material_id").reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    is_val = np.zeros(len(union), dtype=bool)
    is_val[rng.choice(len(union), size=round(args.val_fraction * len(union)), replace=False)] = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    union[~is_val].to_csv(out / "train.csv.gz", index=True)
    union[is_val].to_csv(out / "val.csv.gz", index=True)
    print(f"MP-20-lite: {len(union)} unique rows -> train {int((~is_val).sum())}, val {int(is_val.sum())} in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
