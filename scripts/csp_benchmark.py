#!/usr/bin/env python
"""CSP benchmark with ground-truth templates (METHOD §7.1): one prediction per test row from that
row's own space group and Wyckoff template, then the paper's match rate / RMSE.

Usage: python scripts/csp_benchmark.py --model RUN_DIR --csv TEST.csv.gz --out DIR
           [--limit N | --subset N --subset-seed S] [--steps K] [--step-lr G] [--seed S] [--workers W]

The predictions are the job of ``diffcsp-pp predict --csv`` (:func:`diffcsp_pp.jobs.predict_dataset`,
same batches and seeds): with the same --seed, --steps, --precision and --batch-size (and no
--subset) they are byte for byte the CIFs that command writes.

Writes DIR/<material_id>.cif (symmetrised CIFs that carry the space group), DIR/metrics.json and
DIR/metrics.rows.csv; prints match rate, RMSE, the fraction of outputs with the template's space
group, and the timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--subset", type=int, default=None, help="a fixed random subset of N rows (--subset-seed)")
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: all T-1)")
    parser.add_argument("--step-lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256, help="crystals per sampler batch (as predict --csv)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="network precision")
    parser.add_argument("--parallel", choices=["threads", "processes"], default="threads",
                        help="sampler groups in threads of this process or in worker processes (one core each)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (long runs; with --parallel processes)")
    parser.add_argument("--no-fingerprint", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import torch

    from diffcsp_pp import DiffCSPPP
    from diffcsp_pp.allocator import tune_allocator
    from diffcsp_pp.data.sources import parse_cif, read_crystals
    from diffcsp_pp.evaluate.csp import evaluate_csp, write_rows_csv
    from diffcsp_pp.jobs import dataset_infos, predict_dataset
    from diffcsp_pp.sample.config import SamplerConfig
    from diffcsp_pp.sample.writer import symmetric_cif, unique_names

    tune_allocator()
    torch.set_num_threads(args.threads)
    model = DiffCSPPP.load(args.model)
    engine = model.engine(SamplerConfig(steps=args.steps, step_lr=args.step_lr, precision=args.precision,
                                        parallel=args.parallel, compile=args.compile, progress=True))
    step_lr = engine.config.step_lr  # the model's default unless --step-lr (0 is a valid γ: no corrector move)
    infos = dataset_infos(args.csv, model.config.symprec)[: args.limit]
    if args.subset and args.subset < len(infos):
        import numpy as np

        pick = np.random.default_rng(args.subset_seed).choice(len(infos), args.subset, replace=False)
        infos = [infos[i] for i in sorted(pick.tolist())]
    T = model.config.diffusion.timesteps
    timesteps = engine.timesteps
    start = time.perf_counter()
    # as `diffcsp-pp predict --csv`: an output with a supergroup of its row's group is drawn again
    preds = predict_dataset(engine, infos, seed=args.seed, batch_size=args.batch_size)
    sample_s = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    same_sg = 0
    names, _ = unique_names([str(info.structure_id) for info in infos])  # file-safe, repeated ids kept apart
    for info, name, s in zip(infos, names, preds, strict=True):
        text, detected = symmetric_cif(s)
        same_sg += detected == info.space_group
        (out / f"{name}.cif").write_text(text)
    ids = {i.structure_id for i in infos}
    refs = [(r.material_id, parse_cif(r.cif)) for r in read_crystals(args.csv) if r.material_id in ids]
    start = time.perf_counter()
    metrics, rows = evaluate_csp(refs, {i.structure_id: [s] for i, s in zip(infos, preds)}, workers=args.workers,
                                 fingerprint=not args.no_fingerprint, progress=True)
    eval_s = time.perf_counter() - start
    metrics.update({
        "model": str(args.model), "csv": str(args.csv), "precision": args.precision, "parallel": args.parallel,
        "compile": args.compile, "rows": len(infos), "step_lr": step_lr, "seed": args.seed,
        "subset": {"rows": args.subset, "seed": args.subset_seed} if args.subset else None,
        "sampler_steps": len(timesteps) if timesteps else T - 1, "network_evaluations": 2 * (len(timesteps) if timesteps else T - 1),
        "requested_space_group_rate": same_sg / len(infos),
        "resampled_outputs": sum(p.properties["attempts"] > 1 for p in preds), "batch_size": args.batch_size, "sample_wall_s": round(sample_s, 1),
        "structures_per_s": round(len(infos) / sample_s, 3), "evaluate_wall_s": round(eval_s, 1),
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_rows_csv(out / "metrics.rows.csv", rows)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("protocol",)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
