#!/usr/bin/env python
"""Training throughput of the presets: seconds per optimiser step, crystals/s, peak memory.

Each (preset, dataset) runs in its own process (clean peak-memory and page-fault counts). A step is
what the trainer does: forward, loss, backward, gradient clipping by value, Adam. Batches are drawn
with a fixed seed, so every configuration sees the same batch sequence.

Usage:
  python scripts/benchmark_training.py --data perov_5=PATH[,PATH...] --data mp20lite=PATHS \\
      --preset small --batch perov_5=256 --batch mp20lite=64 [--steps 20] [--precision bf16-mixed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _child(args) -> dict:
    import numpy as np
    import torch

    from diffcsp_pp.diffusion.process import DiffusionConfig, Schedules, diffusion_loss
    from diffcsp_pp.model import CSPNet, ModelConfig
    from diffcsp_pp.train.config import PRESET_MODELS
    from diffcsp_pp.train.run import load_dataset

    torch.set_num_threads(args.threads)
    from pathlib import Path

    from diffcsp_pp.allocator import tune_allocator

    tuned = tune_allocator() if not args.default_allocator else False

    ds = load_dataset(args.files.split(","), None, Path(args.cache_dir), workers=2, progress=False)
    device = torch.device(args.device)
    if args.preset in PRESET_MODELS:
        shape = PRESET_MODELS[args.preset]
    else:  # "HxL", e.g. "256x4": hidden size x layers, the rest as the small preset
        hidden, layers = (int(v) for v in args.preset.split("x"))
        shape = {**PRESET_MODELS["small"], "hidden": hidden, "num_layers": layers}
    model = CSPNet(ModelConfig(task=args.task, **shape)).to(device)
    sched = Schedules(DiffusionConfig()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    batches = [ds.collate(rng.choice(len(ds), size=min(args.batch, len(ds)), replace=False)).to(device)
               for _ in range(args.steps + args.warmup)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    def step(i, batch):
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = diffusion_loss(model, sched, DiffusionConfig(), batch, torch.Generator(device).manual_seed(i))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()

    for i in range(args.warmup):
        step(i, batches[i])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    walls = []
    for _ in range(args.repeats):  # the same batches each repeat; the median is reported
        start = time.perf_counter()
        for i in range(args.warmup, args.warmup + args.steps):
            step(i, batches[i])
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - start)
    wall = sorted(walls)[len(walls) // 2]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / args.repeats
    timed = batches[args.warmup:]
    return {
        "preset": args.preset, "task": args.task, "dataset": args.name, "batch": args.batch,
        "params": sum(p.numel() for p in model.parameters()),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "s_per_step": round(wall / args.steps, 4),
        "s_per_step_repeats": [round(w / args.steps, 4) for w in walls],
        "crystals_per_s": round(sum(b.num_graphs for b in timed) / wall, 1),
        "mean_edges_per_batch": int(np.mean([b.edge_src.numel() for b in timed])),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "minor_page_faults_per_step": int(faults / args.steps),
        "precision": args.precision, "threads": args.threads, "device": args.device, "tuned_allocator": tuned,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", action="append", required=True, help="NAME=PATH[,PATH...]")
    parser.add_argument("--batch", action="append", default=[], help="NAME=BATCH")
    parser.add_argument("--preset", action="append", default=None, help="small, paper or HxL (e.g. 256x4)")
    parser.add_argument("--task", default="csp")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/diffcsp_pp/preprocessed"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--default-allocator", action="store_true", help="do not call tune_allocator()")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--child-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.preset = args.preset[0]
        args.batch = args.child_batch
        print(json.dumps(_child(args)))
        return 0
    batches = dict(b.split("=") for b in args.batch)
    rows = []
    for preset in args.preset or ["small", "paper"]:
        for spec in args.data:
            name, files = spec.split("=", 1)
            cmd = [sys.executable, __file__, "--child", "--name", name, "--files", files, "--preset", preset,
                   "--data", spec, "--task", args.task, "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   "--threads", str(args.threads), "--device", args.device, "--precision", args.precision,
                   "--cache-dir", args.cache_dir] + (["--default-allocator"] if args.default_allocator else [])
            cmd += ["--child-batch", batches.get(name, "64")]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row))
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "python": platform.python_version()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
