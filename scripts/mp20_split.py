#!/usr/bin/env python
"""Build the near-full MP-20 split from ../shared/data/mp_20 (issue #16; see the data README).

- ``train_official.csv.gz``: the official train rows we hold, ``train_partial`` ∪ ``pilot_train``
  (deduplicated by material_id: 15,837 rows, 58 % of the paper's 27,136);
- ``select.csv.gz``: a fixed, seeded selection set of 1,000 rows of ``val_full`` (model and snapshot
  selection; never trained on); ``select_300.csv.gz``: a seeded 300 of them (the quick pilot set);
  ``select_unseen.csv.gz``: the ``select`` rows outside MP-20-lite (``val_biternary`` ∪ ``pilot_val`` ∪
  ``pilot_train``, the training set of the earlier bundled mp20-csp), the only rows on which a new
  snapshot and that model can be compared fairly;
- ``train.csv.gz``: what the bundled models train on, ``train_official`` plus the other 8,047 val rows
  (23,884 rows, 88 % of the paper's training-set size; the paper trains on train only and uses val for
  selection);
- test: ``../shared/data/mp_20/test_full.csv.gz`` itself (all 9,046 official test rows), not copied.

Every input file is checked against the registry's sha256 first. Rows keep their CSV values (the CIF
text of the new files is pymatgen's re-write of the official rows); the columns are the union of the
inputs' (``material_id``, ``cif`` always present). Usage:
``python scripts/mp20_split.py [--data ../shared/data] [--out data/mp20] [--select 1000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from diffcsp_pp.data.registry import lookup, sha256_uncompressed, verify_file

TRAIN_PARTS = ("train_partial", "pilot_train")
#: The files MP-20-lite (scripts/mp20_lite.py, the earlier bundled models' data) was built from.
LITE_PARTS = ("val_biternary", "pilot_val", "pilot_train")


def _read(data: Path, split: str) -> pd.DataFrame:
    path = verify_file(data / "mp_20" / f"{split}.csv.gz", lookup(f"mp_20/{split}"))
    frame = pd.read_csv(path, dtype={"material_id": str})
    return frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])


def build_split(data: Path, n_select: int, seed: int) -> dict[str, pd.DataFrame]:
    """The split's frames: ``train_official``, ``select``, ``select_300``, ``select_unseen`` and ``train``
    (see the module docstring)."""
    parts = {p: _read(data, p) for p in dict.fromkeys((*TRAIN_PARTS, *LITE_PARTS))}  # each file read once
    official = pd.concat([parts[p] for p in TRAIN_PARTS], ignore_index=True)
    official = official.drop_duplicates("material_id").sort_values("material_id", ignore_index=True)
    val = _read(data, "val_full").sort_values("material_id", ignore_index=True)
    if not 0 < n_select < len(val):
        raise ValueError(f"--select must be in 1..{len(val) - 1}, got {n_select}")
    rng = np.random.default_rng(seed)
    is_select = np.zeros(len(val), dtype=bool)
    is_select[rng.choice(len(val), size=n_select, replace=False)] = True
    train = pd.concat([official, val[~is_select]], ignore_index=True)
    if train["material_id"].duplicated().any():
        raise ValueError("a material id occurs in both the train and the val files")
    select = val[is_select].reset_index(drop=True)
    quick = select.iloc[np.sort(rng.choice(len(select), size=min(300, len(select)), replace=False))]
    lite = set().union(*(parts[p]["material_id"] for p in LITE_PARTS))
    unseen = select[~select["material_id"].isin(lite)].reset_index(drop=True)
    return {"train_official": official, "select": select, "select_300": quick.reset_index(drop=True),
            "select_unseen": unseen, "train": train}


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(root.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(root / "data" / "mp20"))
    parser.add_argument("--select", type=int, default=1000, help="rows of val_full held out for selection")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frames = build_split(Path(args.data), args.select, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": "mp_20", "seed": args.seed, "test": str(Path(args.data) / "mp_20" / "test_full.csv.gz"),
               "sha256": {}}
    for name, frame in frames.items():
        frame.to_csv(out / f"{name}.csv.gz", index=False)
        summary[name] = len(frame)
        # `evaluate` recognises these files by this checksum (detect_dataset), as it does official ones
        summary["sha256"][f"{name}.csv.gz"] = sha256_uncompressed(out / f"{name}.csv.gz")
    summary["select_ids"] = sorted(frames["select"]["material_id"])
    (out / "split.json").write_text(json.dumps(summary, indent=1))
    print(f"MP-20 split in {out}: train {summary['train']} (official train {summary['train_official']} "
          f"+ {summary['train'] - summary['train_official']} val rows), select {summary['select']}, "
          f"test = test_full (9046)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
