#!/usr/bin/env python
"""Build the template index (and the template scorer) that prediction from the formula alone needs.

Usage:
    python scripts/build_template_index.py --model src/diffcsp_pp/pretrained/perov5-csp \
        --train /work/shared/data/perov_5/train.csv.gz --val /work/shared/data/perov_5/val.csv.gz

Writes into the model folder:
- ``template_index.npz``: every training crystal, preprocessed exactly as for training (the model's
  symprec), with its symmetry data and Magpie composition fingerprint (no pickle);
- with ``--val``: ``template_scorer.json`` + ``template_scorer.safetensors``, the CSPML pair MLP
  trained on ``--pairs`` training pairs and compared with the Euclidean baseline on validation
  (the better ranker is recorded as ``kind``). Structure fingerprints (CrystalNN, slow) are cached
  in ``~/.cache/diffcsp_pp/retrieval``. Without ``--val`` the Euclidean ranker is written.

Everything runs in one process with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--model", required=True, help="model folder (config.json, model.safetensors)")
    parser.add_argument("--train", nargs="+", required=True, help="training CSV(s) of the model")
    parser.add_argument("--val", nargs="+", help="validation CSV(s): train the MLP scorer and compare it")
    parser.add_argument("--pairs", type=int, default=200_000, help="training pairs for the MLP (default 200000)")
    parser.add_argument("--val-pairs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rank-queries", type=int, default=1000, help="validation crystals for the ranking test")
    parser.add_argument("--match-queries", type=int, default=600,
                        help="validation rows for the template-only match-rate comparison (0: skip)")
    parser.add_argument("--symprec", type=float, help="default: the model's (config.json), else the registry's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from diffcsp_pp.folder import ModelFolder
    from diffcsp_pp.retrieval.index import build_template_index
    from diffcsp_pp.retrieval.scorer import Scorer
    from diffcsp_pp.retrieval.train import fit_scorer

    model = Path(args.model)
    folder = ModelFolder(model)
    if not folder.file(folder.CONFIG).is_file():
        print(f"error: {model} has no {folder.CONFIG}", file=sys.stderr)
        return 2
    symprec = args.symprec if args.symprec is not None else folder.config().symprec
    start = time.perf_counter()
    index, _ = build_template_index(args.train, symprec=symprec, progress=not args.quiet)
    path = folder.write_template_index(index)
    print(f"{path}: {len(index)} templates, {len(set(index.count_keys.tolist()))} count patterns, "
          f"{path.stat().st_size / 1e6:.2f} MB ({time.perf_counter() - start:.0f} s)")
    if args.val:
        scorer = fit_scorer(index, args.train, args.val, symprec=symprec, num_pairs=args.pairs,
                            num_val_pairs=args.val_pairs, epochs=args.epochs, rank_queries=args.rank_queries,
                            match_queries=args.match_queries,
                            seed=args.seed, progress=not args.quiet)
    else:
        scorer = Scorer("euclidean", info={"note": "no validation data given: Euclidean distance of Magpie fingerprints"})
    folder.write_scorer(scorer)
    val = scorer.info.get("validation")
    if val:
        print(json.dumps(val, indent=1))
    print(f"{folder.file(folder.SCORER)}: ranker {scorer.kind!r}")
    total = sum(p.stat().st_size for p in model.iterdir() if p.is_file())
    print(f"model folder {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
