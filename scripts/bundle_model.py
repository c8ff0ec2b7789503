#!/usr/bin/env python
"""Copy a run's weights into the package as a bundled model with a model card.

Usage: python scripts/bundle_model.py --run RUN_DIR --name perov5-csp --metrics METRICS.json --wall-time-h H
           [--note TEXT] [--step-lr G] [--formula-diff-ratio R]

Writes src/diffcsp_pp/pretrained/NAME/{model.safetensors, config.json, template_stats.json, card.json,
README.md} through :class:`diffcsp_pp.folder.ModelFolder` and leaves any other file there (the
template index and scorer of prediction from the formula alone, which do not depend on the weights).
The config is the run's (file paths reduced to names); ``--step-lr`` / ``--formula-diff-ratio`` set
its sampler defaults (a measured choice: say where it was measured in ``--note``), otherwise the
bundled folder's earlier choices are kept. The card takes the training facts from the run (config,
steps, epochs, validation loss) and the evaluation figures from METRICS.json (``evaluate csp`` or
``evaluate gen`` output, plus the run facts named in the card's fields); it is documentation only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: the fields of an ``evaluate gen`` metrics file a card keeps (``generated``, ``reference``,
#: ``sampler_steps`` and ``sample_wall_s`` added to the file by whoever ran it)
GEN_KEYS = ("generated", "reference", "sampler_steps", "sample_wall_s", "struct_valid", "comp_valid", "valid",
            "cov_recall", "cov_precision", "wdist_density", "wdist_num_elements", "requested_space_group_rate",
            "uniqueness", "novelty", "novel_template_rate")


def _cost(state: dict) -> str:
    """The README's cost text, e.g. ' (4.40 CPU-hours, in 2 stages continued with --init-from)'."""
    parts = ([f"{state['cpu_hours']:.2f} CPU-hours"] if "cpu_hours" in state else []) + (
        [f"in {len(state['segments'])} stages continued with --init-from"] if "segments" in state else [])
    return f" ({', '.join(parts)})" if parts else ""


def main() -> int:
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--metrics", action="append", default=[])
    parser.add_argument("--wall-time-h", type=float, required=True, help="training wall time (hours)")
    parser.add_argument("--note", default="")
    parser.add_argument("--step-lr", type=float, help="the model's Langevin γ (default: the official value)")
    parser.add_argument("--formula-diff-ratio", type=float, help="refinement start of prediction from a formula")
    args = parser.parse_args()
    from safetensors.torch import load_file

    from diffcsp_pp.folder import ModelFolder, combine_training

    run = ModelFolder(args.run)
    dest = ModelFolder(ROOT / "src" / "diffcsp_pp" / "pretrained" / args.name)
    cfg = run.config()
    sampler = dest.config().sampler if dest.file(dest.CONFIG).is_file() else cfg.sampler
    changes = {k: v for k, v in (("step_lr", args.step_lr), ("formula_diff_ratio", args.formula_diff_ratio)) if v is not None}
    # a run on CSV files without a dataset name reads them at the default tolerance; the bundled
    # model keeps the tolerance its config states (MP-20: 0.1, the benchmark's)
    symprec = cfg.symprec if cfg.symprec is not None or not dest.file(dest.CONFIG).is_file() else dest.config().symprec
    cfg = dataclasses.replace(cfg, symprec=symprec, train_files=[Path(f).name for f in cfg.train_files],
                              val_files=[Path(f).name for f in cfg.val_files], init_from=None, init_from_training=None,
                              sampler=dataclasses.replace(sampler, **changes))
    weights = load_file(run.file(run.WEIGHTS))
    dest.write_weights(weights)
    dest.write_config(cfg)
    if run.template_stats():
        dest.write_template_stats(run.template_stats())
    # a run continued from other weights (--init-from) states the whole training, stage by stage
    machine = f"2-core CPU (AMD EPYC), {cfg.train.precision}"
    state = combine_training(run.prior_training(), {**run.training_state(), "wall_time_h": args.wall_time_h,
                                                    "machine": machine})
    if state.get("segments"):  # every stage's wall time (given at its bundling, else its run's clock)
        state["wall_time_h"] = sum(float(seg.get("wall_time_h", seg.get("wall_hours", 0.0)))
                                   for seg in state["segments"])
    state["wall_time_h"] = round(state["wall_time_h"], 2)
    metrics = [json.loads(Path(m).read_text()) for m in args.metrics]
    # ``evaluate gen`` metrics (COV etc.) go into their own list; the rest are ``evaluate csp`` ones
    gen_metrics = [m for m in metrics if "cov_recall" in m]
    metrics = [m for m in metrics if "cov_recall" not in m]
    config = cfg.to_dict()
    card = {
        "name": args.name, "task": config["task"], "preset": config["preset"], "dataset": config["dataset"],
        "train_files": config["train_files"], "val_files": config["val_files"], "model": config["model"],
        "params": int(sum(t.numel() for t in weights.values())),
        "training": state,
        "evaluation": [{k: m.get(k) for k in ("csv", "rows", "sampler_steps", "network_evaluations", "match_rate", "rmse",
                                               "match_rate_ungated", "rmse_ungated", "match_rate_over_predicted_rows",
                                               "requested_space_group_rate", "sample_wall_s")} for m in metrics],
        **({"evaluation_gen": [{k: m.get(k) for k in GEN_KEYS} for m in gen_metrics]} if gen_metrics else {}),
        "sampler_defaults": config["sampler"],  # documentation of what config.json sets
        "note": args.note,
    }
    lines = [f"# {args.name}", "", args.note, "", f"- task: {card['task']}; preset: {card['preset']} "
             f"({card['params']:,} parameters); data: {', '.join(card['train_files'])}",
             f"- trained: {state['global_step']} steps ({state['epoch']} epochs), {state['wall_time_h']:.2f} h on a 2-core "
             f"CPU{_cost(state)}; validation loss "
             + ("not measured yet" if state.get("val_loss") is None else f"{state['val_loss']:.4f}")]
    if card["evaluation"]:
        lines += ["", "| test file | rows | sampler steps | match rate | RMSE | ungated match rate | requested space "
                  "group kept |", "|---|---|---|---|---|---|---|"]
    for e in card["evaluation"]:
        lines.append(f"| {Path(e['csv']).name} | {e['rows']} | {e['sampler_steps']} | {100 * e['match_rate']:.2f} % "
                     f"| {e['rmse']:.4f} | {100 * e['match_rate_ungated']:.2f} % "
                     f"| {100 * e['requested_space_group_rate']:.1f} % |")
    if gen_metrics:
        lines += ["", "| generated | reference | sampler steps | structural validity | compositional validity | COV-R | "
                  "COV-P | d_ρ | d_elem | requested space group kept |", "|---|---|---|---|---|---|---|---|---|---|"]
        for e in card["evaluation_gen"]:
            lines.append(f"| {e['generated']} | {Path(str(e['reference'])).name} | {e['sampler_steps']} | "
                         f"{100 * e['struct_valid']:.1f} % | {100 * e['comp_valid']:.1f} % | {100 * e['cov_recall']:.1f} % | "
                         f"{100 * e['cov_precision']:.1f} % | {e['wdist_density']:.3f} | {e['wdist_num_elements']:.3f} | "
                         f"{100 * e['requested_space_group_rate']:.1f} % |")
    dest.write_card(card, "\n".join(lines) + "\n")
    print(f"bundled {dest.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
