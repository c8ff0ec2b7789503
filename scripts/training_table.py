#!/usr/bin/env python
"""Markdown table from benchmark_training.py JSON files, with the official-code anchors of issue #3.

Usage: python scripts/training_table.py docs/bench/training_cpu_*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: s/step of the official code on this machine kind (fp32, 2 threads, default allocator), from issue #3
ANCHOR = {("small", "perov_5"): 0.212, ("small", "mp20lite"): 1.17, ("paper", "perov_5"): 1.18, ("paper", "mp20lite"): 6.83}


def main(paths: list[str]) -> int:
    print("| preset | task | dataset | batch | params | precision | allocator | s/step (median of repeats) | repeats | crystals/s "
          "| edges/batch | peak RSS MiB | page faults/step | official anchor s/step | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            anchor = ANCHOR.get((r["preset"], r["dataset"])) if r["task"] == "csp" else None
            speed = f"{anchor / r['s_per_step']:.2f}×" if anchor and r["precision"] == "32-true" else "–"
            alloc = "tuned" if r.get("tuned_allocator") else "default"
            reps = ", ".join(str(x) for x in r.get("s_per_step_repeats", []))
            print(f"| {r['preset']} | {r['task']} | {r['dataset']} | {r['batch']} | {r['params']:,} | {r['precision']} | {alloc} "
                  f"| {r['s_per_step']} | {reps} | {r['crystals_per_s']} | {r['mean_edges_per_batch']} | {r['peak_rss_mib']} "
                  f"| {r['minor_page_faults_per_step']} | {anchor or '–'} | {speed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
