#!/usr/bin/env python
"""Copy a run's weights into the package as a bundled model with a model card.

Usage: python scripts/bundle_model.py --run RUN_DIR --name perov5-csp --metrics METRICS.json [--note TEXT]

Writes src/diffcsp_pp/pretrained/NAME/{model.safetensors, config.json, template_stats.json, card.json,
README.md} and leaves any other file there (the template index and scorer of prediction from the
formula alone, which do not depend on the weights). The card takes the training facts from the run
(config, steps, epochs, validation loss, wall time from the CSV logs) and the evaluation figures from
METRICS.json (from csp_benchmark.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--metrics", action="append", default=[])
    parser.add_argument("--wall-time-h", type=float, required=True, help="training wall time (hours)")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    run = Path(args.run)
    dest = ROOT / "src" / "diffcsp_pp" / "pretrained" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "model.safetensors", dest / "model.safetensors")
    config = json.loads((run / "config.json").read_text())
    config["train_files"] = [Path(f).name for f in config["train_files"]]
    config["val_files"] = [Path(f).name for f in config["val_files"]]
    config["init_from"] = None
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    if (run / "template_stats.json").is_file():
        shutil.copy(run / "template_stats.json", dest / "template_stats.json")
    state = json.loads((run / "training_state.json").read_text())
    metrics = [json.loads(Path(m).read_text()) for m in args.metrics]
    card = {
        "name": args.name, "task": config["task"], "preset": config["preset"], "dataset": config["dataset"],
        "train_files": config["train_files"], "val_files": config["val_files"], "model": config["model"],
        "params": None, "training": {**state, "wall_time_h": args.wall_time_h,
                                     "machine": f"2-core CPU (AMD EPYC), {config['train'].get('precision', '32-true')}"},
        "evaluation": [{k: m.get(k) for k in ("csv", "rows", "sampler_steps", "network_evaluations", "match_rate", "rmse",
                                               "match_rate_ungated", "rmse_ungated", "match_rate_over_predicted_rows",
                                               "requested_space_group_rate", "sample_wall_s")} for m in metrics],
        "note": args.note,
    }
    from safetensors.torch import load_file

    card["params"] = int(sum(t.numel() for t in load_file(dest / "model.safetensors").values()))
    (dest / "card.json").write_text(json.dumps(card, indent=1))
    lines = [f"# {args.name}", "", args.note, "", f"- task: {card['task']}; preset: {card['preset']} "
             f"({card['params']:,} parameters); data: {', '.join(card['train_files'])}",
             f"- trained: {state['global_step']} steps ({state['epoch']} epochs), {args.wall_time_h} h on a 2-core CPU; "
             f"validation loss {state['val_loss']:.4f}", "", "| test file | rows | sampler steps | match rate | RMSE | "
             "ungated match rate | requested space group kept |", "|---|---|---|---|---|---|---|"]
    for e in card["evaluation"]:
        lines.append(f"| {Path(e['csv']).name} | {e['rows']} | {e['sampler_steps']} | {100 * e['match_rate']:.2f} % "
                     f"| {e['rmse']:.4f} | {100 * e['match_rate_ungated']:.2f} % "
                     f"| {100 * e['requested_space_group_rate']:.1f} % |")
    (dest / "README.md").write_text("\n".join(lines) + "\n")
    print(f"bundled {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
