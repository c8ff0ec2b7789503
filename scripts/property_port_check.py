#!/usr/bin/env python
"""Check the DimeNet++ port: the paper's property model against the DFT values of a test CSV.

Usage:
    python scripts/property_port_check.py [--model mp20] [--csv ../shared/data/mp_20/pilot_test.csv.gz]
        [--column formation_energy_per_atom] [--out runs/results/property_port/metrics.json]

Builds the CrystalNN graph of every row (the slow part, ~0.1 s per crystal), predicts with the
model (weights from ``$DIFFCSP_PP_PROPERTY_MODELS`` or ../shared/models/cdvae-property) and writes
MAE, RMSE, Pearson r, the target's standard deviation and timings. A wrong port is off by about the
target's spread; CDVAE's own test MAE for this model is a few hundredths of an eV/atom.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mp20")
    parser.add_argument("--csv", default=str(ROOT.parent / "shared" / "data" / "mp_20" / "pilot_test.csv.gz"))
    parser.add_argument("--column", default="formation_energy_per_atom")
    parser.add_argument("--out", default=str(ROOT / "runs" / "results" / "property_port" / "metrics.json"))
    args = parser.parse_args()

    import pandas as pd

    from diffcsp_pp.data.sources import parse_cif
    from diffcsp_pp.evaluate.property_model import PropertyModel, safe_crystal_graph

    warnings.simplefilter("ignore")
    df = pd.read_csv(args.csv)
    if args.column not in df.columns:
        raise SystemExit(f"{args.csv} has no column {args.column!r}")
    model = PropertyModel.load(args.model)
    t0 = time.perf_counter()
    graphs = [safe_crystal_graph(parse_cif(c)) for c in df["cif"]]
    t_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict_graphs(graphs)
    t_model = time.perf_counter() - t0
    y = df[args.column].to_numpy(dtype=float)
    ok = np.isfinite(pred) & np.isfinite(y)
    err = pred[ok] - y[ok]
    metrics = {
        "model": args.model, "target": model.target, "csv": str(args.csv), "column": args.column,
        "rows": int(len(df)), "predicted": int(ok.sum()),
        "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
        "pearson_r": float(np.corrcoef(pred[ok], y[ok])[0, 1]), "target_std": float(y[ok].std()),
        "graph_s": round(t_graph, 1), "model_s": round(t_model, 2),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
