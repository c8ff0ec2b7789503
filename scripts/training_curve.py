#!/usr/bin/env python
"""Per-epoch training curve of a run directory, as the Markdown rows of docs/BENCHMARKS.md §13.

Usage: python scripts/training_curve.py RUN_DIR [--from-epoch N]

One row per epoch with a validation loss: epoch, last logged step, CPU hours at that step, mean of
the epoch's logged training losses, validation loss (``logs/*/metrics.csv``, all versions, i.e. all
resumes). A run continued from other weights (``train --init-from``) is shown in the model's whole
history: steps, epochs and CPU hours are offset by what the starting weights had had
(:meth:`diffcsp_pp.folder.ModelFolder.prior_training`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def curve_rows(run_dir: Path, from_epoch: int = 0) -> list[tuple[int, int, float, float, float]]:
    """(epoch, step, CPU hours, mean train loss, val loss) per validated epoch, offset by the prior."""
    import pandas as pd

    from diffcsp_pp.folder import ModelFolder

    files = sorted((run_dir / "logs").rglob("metrics.csv"))
    if not files:
        raise FileNotFoundError(f"no logs/*/metrics.csv in {run_dir}")
    log = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    prior = ModelFolder(run_dir).prior_training()
    d_step, d_epoch, d_cpu = (int(prior.get("global_step", 0)), int(prior.get("epoch", 0)),
                              float(prior.get("cpu_hours", 0.0)))
    rows = []
    for epoch, part in log.groupby("epoch"):
        val = part["val_loss"].dropna() if "val_loss" in part else part.iloc[0:0]
        steps = part.dropna(subset=["train/loss"])
        if val.empty or steps.empty or epoch + d_epoch < from_epoch:
            continue
        last = steps.iloc[-1]
        rows.append((int(epoch) + d_epoch, int(last["step"]) + d_step, float(last["cpu_hours"]) + d_cpu,
                     float(steps["train/loss"].mean()), float(val.iloc[-1])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--from-epoch", type=int, default=0)
    args = parser.parse_args()
    for epoch, step, cpu, train, val in curve_rows(args.run, args.from_epoch):
        print(f"| {epoch} | {step:,} | {cpu:.3f} | {train:.3f} | {val:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
