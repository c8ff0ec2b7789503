#!/usr/bin/env python
"""Sampling throughput: seconds per network evaluation (NFE) and structures/s for one batch of
test templates, like the official sampler's anchor (100 crystals, one batch).

Usage: python scripts/benchmark_sampling.py --model RUN_DIR --csv TEST.csv.gz [--count 100] [--steps 50]
The sampler runs ``--steps`` predictor-corrector steps (2 NFE each) over one batch; the time per NFE
does not depend on the step count, so the 1998-NFE time is 999 x the per-step time.

``--no-plan`` turns off the sampler's precomputed Fourier products (the speed before it).
The sampling goes through the engine every job uses (``diffcsp_pp.sample.engine.Engine.sample``).
``--compile`` samples with ``SamplerConfig(compile=True)`` (the sampler's ``torch.compile`` of the
network); the warm-up then samples the same groups (same shapes) for 3 steps and its wall time,
which holds the compilation, is reported as ``warmup_s`` (not in the per-NFE figure). With
``--compile`` and several groups use ``--workers 1`` or ``--processes``.
``--processes P`` splits the crystals into P equal slices sampled by P processes at once (spawned,
one intra-op thread each); each warms up (and compiles) on its slice, all start the timed run
together (a barrier), and the figure is the slowest process's wall time over the NFE.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="network precision")
    parser.add_argument("--group-size", type=int, default=50, help="crystals per sampler group")
    parser.add_argument("--workers", type=int, default=None, help="groups sampled at once (default: threads)")
    parser.add_argument("--default-allocator", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (the sampler's compile_network=True)")
    parser.add_argument("--no-plan", action="store_true", help="recompute every Fourier product at every evaluation")
    parser.add_argument("--processes", type=int, default=1, help="sample disjoint slices in this many processes at once")
    args = parser.parse_args()
    if args.processes < 1 or args.count % args.processes:
        parser.error("--processes must be >= 1 and divide --count")
    if args.processes == 1:
        wall, row = _run(args, 0, args.count, None)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(args.processes)
        part = args.count // args.processes
        queue = ctx.Queue()
        procs = [ctx.Process(target=_child, args=(args, i * part, part, barrier, queue)) for i in range(args.processes)]
        for proc in procs:
            proc.start()
        results = [queue.get() for _ in procs]
        for proc in procs:
            proc.join()
        wall = max(w for w, _ in results)
        row = results[0][1]
        row["crystals"] = args.count
        row["atoms"] = sum(r["atoms"] for _, r in results)
        row["edges"] = sum(r["edges"] for _, r in results)
        row["warmup_s"] = max(r["warmup_s"] for _, r in results)
        row["page_faults_per_nfe"] = sum(r["page_faults_per_nfe"] for _, r in results)
    nfe = row["nfe"]
    row.update({
        "s_per_nfe": round(wall / nfe, 4), "s_for_1998_nfe": round(wall / nfe * 1998, 1),
        "structures_per_s_at_1998_nfe": round(args.count / (wall / nfe * 1998), 3), "processes": args.processes,
        "date": time.strftime("%Y-%m-%d"),
    })
    print(json.dumps(row))
    return 0


def _child(args, start_row: int, count: int, barrier, queue) -> None:
    queue.put(_run(args, start_row, count, barrier))


def _run(args, start_row: int, count: int, barrier) -> tuple[float, dict]:
    """Sample ``count`` templates from row ``start_row`` (after a warm-up); (wall seconds, row fields)."""
    import torch

    from diffcsp_pp.allocator import tune_allocator
    from diffcsp_pp.data.preprocess import PreprocessConfig, preprocess
    from diffcsp_pp.data.registry import default_cache_dir
    from diffcsp_pp.data.store import load_records
    from diffcsp_pp.folder import ModelFolder
    from diffcsp_pp.sample.config import SamplerConfig
    from diffcsp_pp.sample.engine import Engine

    tuned = False if args.default_allocator else tune_allocator()
    torch.set_num_threads(1 if barrier is not None else args.threads)
    model, cfg = ModelFolder.resolve(args.model).load()
    res = preprocess(args.csv, default_cache_dir() / "preprocessed", PreprocessConfig(symprec=cfg.symprec), progress=False)
    infos = load_records(res.output)[start_row : start_row + count]
    engine = Engine(model, cfg, SamplerConfig(steps=args.steps, step_lr=1e-5, max_edges=10**9, precision=args.precision,
                                              group_size=args.group_size, workers=args.workers,
                                              fourier_plan=not args.no_plan, compile=args.compile))
    steps = engine.timesteps
    start = time.perf_counter()
    # warm-up (with --compile: compiles for the timed groups' shapes)
    engine.sample(infos if args.compile else infos[:4], seed=0, timesteps=steps[-3:])
    warmup = time.perf_counter() - start
    if barrier is not None:
        barrier.wait()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    engine.sample(infos, seed=0)
    wall = time.perf_counter() - start
    nfe = 2 * len(steps)
    sizes = {i.num_atoms for i in infos}
    from diffcsp_pp.symmetry.wyckoff import centering_translations

    # edges the network computes: n²/c for a cell with c centring translations (model/fast.py)
    computed = sum(i.num_atoms**2 // len(centering_translations(i.space_group)) for i in infos)
    row = {
        "model": args.model, "csv": args.csv, "crystals": len(infos), "params": sum(p.numel() for p in model.parameters()),
        "atoms": int(sum(i.num_atoms for i in infos)), "edges": int(sum(i.num_atoms**2 for i in infos)),
        "edges_computed": int(computed),
        "nfe": nfe, "page_faults_per_nfe": int((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / nfe),
        "compile": args.compile, "fourier_plan": not args.no_plan,
        "dense_layout": not args.no_plan and len(sizes) == 1, "warmup_s": round(warmup, 1),
        "precision": args.precision, "group_size": args.group_size, "workers": args.workers, "tuned_allocator": tuned,
        "threads": 1 if barrier is not None else args.threads, "machine": platform.machine(),
    }
    return wall, row


if __name__ == "__main__":
    sys.exit(main())
