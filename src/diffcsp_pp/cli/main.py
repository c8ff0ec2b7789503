"""``diffcsp-pp`` command line. Each subcommand parses flags and calls one library function.

Errors the user can fix (bad paths, bad values, crystals that cannot be analysed) end the command
with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


#: learning-rate warm-up steps of a run started from trained weights (``train --init-from``)
INIT_FROM_WARMUP = 500


def _init_from_path(value: str | None) -> str | None:
    """``--init-from``: a weights file or model folder on disk, else a bundled model's name."""
    if value is None:
        return None
    from ..folder import BUNDLED, ModelFolder

    if not Path(value).exists() and value in BUNDLED:
        return str(ModelFolder.resolve(value).path.resolve())
    return str(Path(value).resolve())


# ----------------------------------------------------------------------------------- symmetry
def _symmetry_payload(info) -> dict:
    lengths, angles = info.lattice_parameters
    sizes = np.bincount(np.unique(info.anchor_idx, return_inverse=True)[1])
    anchors = info.anchor_coords
    return {
        "id": info.structure_id,
        "space_group": info.space_group,
        "symbol": info.space_group_symbol,
        "symprec": info.symprec,
        "num_atoms": info.num_atoms,
        "orbits": [
            {"species": s, "wyckoff": w, "multiplicity": int(m), "anchor": [round(float(v), 6) for v in x]}
            for s, w, m, x in zip(info.species, info.wyckoff_letters, sizes, anchors, strict=True)
        ],
        "k": [round(float(v), 8) for v in info.k],
        "lattice": {
            "a": float(lengths[0]), "b": float(lengths[1]), "c": float(lengths[2]),
            "alpha": float(angles[0]), "beta": float(angles[1]), "gamma": float(angles[2]),
        },
    }


def cmd_symmetry(args) -> int:
    from ..data.sources import parse_cif
    from ..symmetry.analyze import analyze

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        structure = parse_cif(path.read_text(errors="replace"))
    except Exception as err:  # noqa: BLE001 - report any parser failure in one line
        raise ValueError(f"cannot read a structure from {path}: {type(err).__name__}: {err}") from None
    info = analyze(structure, symprec=args.symprec, structure_id=path.name)
    payload = _symmetry_payload(info)
    if args.json:
        print(json.dumps(payload, indent=1))
        return 0
    lat = payload["lattice"]
    print(f"{path.name}: {structure.composition.reduced_formula}, {info.num_atoms} atoms in the conventional cell")
    print(f"space group   {info.space_group} ({payload['symbol']}), symprec {info.symprec} Å")
    print(
        f"lattice       a={lat['a']:.4f} b={lat['b']:.4f} c={lat['c']:.4f} Å  "
        f"α={lat['alpha']:.3f} β={lat['beta']:.3f} γ={lat['gamma']:.3f}°"
    )
    print("k             " + " ".join(f"{v:+.6f}" for v in info.k))
    print("Wyckoff orbits")
    for orbit in payload["orbits"]:
        x, y, z = orbit["anchor"]
        print(f"  {orbit['species']:<3} {orbit['wyckoff']:>4}   anchor ({x:.6f}, {y:.6f}, {z:.6f})")
    return 0


# --------------------------------------------------------------------------------- preprocess
def cmd_preprocess(args) -> int:
    from ..data.preprocess import PreprocessConfig, preprocess
    from ..errors import DataError
    from ..policy import check_output_folder

    check_output_folder(args.out)
    result = preprocess(
        args.input,
        args.out,
        PreprocessConfig(symprec=args.symprec, angle_tolerance=args.angle_tolerance),
        workers=args.workers,
        progress=not args.quiet,
    )
    state = "reused cache" if result.cached else f"{result.wall_time_s:.1f} s"
    reasons = ", ".join(f"{k}: {v}" for k, v in result.failures_by_reason.items()) or "none"
    print(f"{result.succeeded}/{result.rows} crystals analysed (symprec {result.symprec}; {state})")
    print(f"failed rows: {result.failed} ({reasons})")
    print(f"output  {result.output}")
    print(f"report  {result.report}")
    if result.succeeded == 0:
        raise DataError(f"no crystal of {args.input} could be analysed ({reasons}; rows and reasons in {result.report})")
    return 0


# ----------------------------------------------------------------------------------- datasets
def cmd_datasets(args) -> int:
    from ..data.registry import DATASETS, get_file

    if args.verify is not None:
        root = Path(args.verify)
        if not root.is_dir():
            raise FileNotFoundError(f"no such folder: {root}")
        bad = 0
        for entry in DATASETS.values():
            local = next(
                (p for p in (root / entry.dataset / f"{entry.split}.csv.gz", root / entry.dataset / f"{entry.split}.csv") if p.is_file()),
                None,
            )
            if local is None:
                continue
            try:
                get_file(entry.name, local=local)
                print(f"ok       {entry.name:<24} {local}")
            except Exception as err:  # noqa: BLE001 - report and continue with the next file
                bad += 1
                print(f"MISMATCH {entry.name:<24} {err}")
        return 1 if bad else 0
    print(f"{'name':<24} {'rows':>6} {'symprec':>7}  source")
    for entry in DATASETS.values():
        rows = str(entry.rows) if entry.rows else "?"
        print(f"{entry.name:<24} {rows:>6} {entry.symprec:>7}  {entry.url or 'local subset (no URL)'}")
    return 0


# -------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    import dataclasses

    from ..data.registry import find_by_checksum
    from ..data.sources import content_hash
    from ..policy import check, check_output_folder
    from ..train.config import RunConfig, preset_config
    from ..train.run import load_run_config, train

    overrides = {
        "max_epochs": args.max_epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "checkpoint_every": args.checkpoint_every, "seed": args.seed, "devices": args.devices,
        "num_nodes": args.num_nodes, "accelerator": args.accelerator, "precision": args.precision,
        "scheduler": args.scheduler, "lr": args.lr, "val_every_epochs": args.val_every,
        "num_threads": args.threads, "ema_decay": args.ema_decay,
        "ema": False if args.no_ema else None, "max_cpu_hours": args.max_cpu_hours,
        "warmup_steps": args.warmup_steps if args.warmup_steps is not None
        else (INIT_FROM_WARMUP if args.init_from and not args.resume else None),
    }
    check_output_folder(args.out)
    check("workers", args.workers, "--workers")
    _check_accelerator(args.accelerator)
    if args.resume:
        from ..folder import ModelFolder

        if not ModelFolder(args.out).file(ModelFolder.CONFIG).is_file():
            raise FileNotFoundError(f"nothing to resume: {args.out} holds no run (no {ModelFolder.CONFIG})")
        cfg = load_run_config(args.out)
        extend = {k: v for k, v in overrides.items() if v is not None and k in ("max_epochs", "max_steps", "devices", "num_nodes", "accelerator", "num_threads",
                                                                                  "precision", "checkpoint_every", "max_cpu_hours")}
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **extend))
    else:
        if not args.train or not args.val:
            raise ValueError("--train and --val are required (unless --resume)")
        for f in [*args.train, *args.val]:
            if not Path(f).exists():
                raise FileNotFoundError(f"no such file or folder: {f}")
        first = Path(args.train[0])
        known = None if first.is_dir() else find_by_checksum(content_hash(first))
        dataset = known.dataset if known else None
        model, train_cfg = preset_config(args.preset, args.task, dataset, overrides)
        shape = {"hidden": args.hidden, "num_layers": args.layers, "num_freqs": args.num_freqs}
        model = dataclasses.replace(model, **{k: v for k, v in shape.items() if v is not None})
        cfg = RunConfig(task=args.task, preset=args.preset, dataset=dataset,
                        train_files=[str(Path(f).resolve()) for f in args.train],
                        val_files=[str(Path(f).resolve()) for f in args.val],
                        symprec=args.symprec, model=model, train=train_cfg,
                        init_from=_init_from_path(args.init_from))
    weights = train(cfg, args.out, resume=args.resume, progress=not args.quiet,
                    cache_dir=args.cache_dir, workers=args.workers)
    print(f"weights {weights}")
    return 0


def _check_accelerator(accelerator: str | None) -> None:
    """--accelerator gpu needs a GPU torch can use: say so before any data is read."""
    if accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--accelerator gpu: no CUDA GPU is available to torch here (use --accelerator cpu or auto)")


# ------------------------------------------------------------------------------------ predict
def _check_before_load(args, task: str) -> None:
    """What predict / generate can check without the network's weights, before they load (so the
    first error is instant): the output folder, the resource limits, the model's config (its task,
    steps <= T - 1), the formula, the space group and the Wyckoff assignment or pattern."""
    from .. import jobs, policy
    from ..folder import DEFAULT_CSP, DEFAULT_GEN, ModelFolder
    from ..symmetry.families import check_space_group

    _relax_options(args, {}, rank_allowed=task == "csp" and (args.formula is not None
                                                             or getattr(args, "from_formula", False)))  # flags first
    policy.check_output_folder(args.out)
    if args.seed is not None:
        _check_seed(args.seed)
    policy.check("structures", args.n, "-n")
    if getattr(args, "top_k", None) is not None:
        policy.check("structures", args.top_k, "--top-k")
    if getattr(args, "batch_size", None) is not None:
        policy.check("batch_size", args.batch_size, "--batch-size")
    if getattr(args, "csv", None) is not None and not Path(args.csv).exists():
        raise FileNotFoundError(f"no such file or folder: {args.csv}")
    if args.space_group is not None:
        check_space_group(args.space_group)
    formula = getattr(args, "formula", None)
    if formula is not None:
        jobs.model_formula(formula)
    folder = ModelFolder.resolve(args.model, default=DEFAULT_CSP if task == "csp" else DEFAULT_GEN)
    cfg = folder.config()
    if cfg.task != task:
        raise ValueError(f"{folder.path} is an ab initio generation model; predict needs a CSP model" if task == "csp"
                         else f"{folder.path} is a CSP model; generate needs an ab initio (gen) model, e.g. mp20-gen")
    policy.check_steps(args.steps, cfg.diffusion.timesteps)
    if formula is not None and args.space_group is not None:
        jobs.wyckoff_candidates(folder.template_stats(), formula, args.space_group, args.wyckoff, limit=1)
    if getattr(args, "from_formula", False):
        jobs.formula_source(args.csv)  # a CSV without a cif or formula column: refused before any work
    if task == "csp" and ((formula is not None and args.space_group is None) or getattr(args, "from_formula", False)):
        folder.require_template_index()
    if task == "gen":
        jobs.generation_plan(folder.template_stats(), args.n, args.space_group, 0, args.wyckoff)


def cmd_predict(args) -> int:
    from ..api import DiffCSPPP

    if (args.formula is None) == (args.csv is None):
        raise ValueError("give either --formula (optionally with --space-group) or --csv")
    from_formula = args.csv is not None and (args.from_formula or _formula_list(args.csv))
    if args.from_formula and args.csv is None:
        raise ValueError("--from-formula applies to --csv (use --formula for one formula)")
    if from_formula and args.space_group is not None:
        raise ValueError("--space-group does not apply to --csv")
    alone = (args.formula is not None and args.space_group is None) or from_formula
    if args.top_k is not None and not alone:
        raise ValueError("--top-k applies to --formula without --space-group or to --csv --from-formula "
                         "(use -n with --space-group)")
    if (args.processes or args.compile) and args.csv is None:
        raise ValueError("--processes and --compile apply to --csv (benchmark mode)")
    args.from_formula = from_formula
    _check_before_load(args, "csp")
    devices = _devices(args, "--csv (benchmark mode)" if args.csv is None else
                       "--csv without --from-formula" if from_formula else None)
    model = DiffCSPPP.load(args.model, device=_torch_device(args))
    inputs = {k: getattr(args, k) for k in ("formula", "space_group", "wyckoff", "n", "csv", "seed", "steps", "limit",
                                            "precision")}
    if args.compile:  # compiled kernels round differently: part of how the outputs were made
        inputs["compile"] = True
    inputs["model"] = str(model.path)
    inputs["top_k"] = args.top_k
    inputs["diff_ratio"] = args.diff_ratio
    if from_formula:
        inputs["from_formula"] = True
    if args.diff_ratio is not None and not alone:
        raise ValueError("--diff-ratio applies to --formula without --space-group or to --csv --from-formula")
    post = _relax_options(args, inputs, rank_allowed=args.formula is not None or from_formula)
    base = _writer(args, inputs, devices, model)
    with base:
        writer = base
        done = writer.done()
        seed = 0 if args.seed is None else _check_seed(args.seed)
        sampler = _sampler(args)
        if post and args.csv is not None and not from_formula:
            writer = _relaxing_writer(args, writer)
        if args.formula is not None and args.space_group is None:
            # formula alone: retrieved training templates, refined with partial noise (top-k, ranked)
            top_k = args.top_k or args.n
            names = [f"{args.formula}_rank{i + 1}" for i in range(top_k)]
            if all(n in done for n in names):
                print(f"all {top_k} structures already in {args.out}")
                return 0
            structures = model.predict_from_formula(args.formula, top_k=top_k, seed=seed, diff_ratio=args.diff_ratio,
                                                    sampler=sampler)
            structures = _relax_and_rank(args, structures)
            # template only (diff ratio 0) returns each distinct candidate once, so possibly fewer than K
            writer.add((name, s, dict(s.properties)) for name, s in zip(names, structures))
        elif args.formula is not None:
            names = [f"{args.formula}_sg{args.space_group}_{i}" for i in range(args.n)]
            if all(n in done for n in names):
                print(f"all {args.n} structures already in {args.out}")
                return 0
            structures = model.predict(args.formula, args.space_group, wyckoff=args.wyckoff, n=args.n, seed=seed,
                                       sampler=sampler)
            structures = _relax_and_rank(args, structures)
            writer.add((name, s, dict(s.properties)) for name, s in zip(names, structures, strict=True))
        elif from_formula:
            _predict_formula_csv(args, model, writer, done, seed, sampler)
        else:
            _predict_csv(args, model, writer, done, seed, sampler, devices)
    if not _is_rank_zero():
        return 0
    from ..data import outputs

    rate = outputs.summary(args.out)
    if args.formula is not None:
        for e in outputs.records(args.out):
            print(_describe(e))
    print(f"{rate['count']} structures in {args.out} (requested space group kept: "
          f"{100 * (rate['requested_space_group_rate'] or 0):.1f} %)")
    return 0


def _describe(entry: dict) -> str:
    """One line per predicted structure: file, formula, space group, Wyckoff assignment, cell."""
    from pymatgen.symmetry.groups import SpaceGroup

    sg = entry.get("detected_space_group") or 0
    symbol = SpaceGroup.from_int_number(sg).symbol if 1 <= sg <= 230 else "?"
    origin = f"  from {entry['template']}" if entry.get("source") == "template" else ""
    lattice = entry.get("lattice")
    cell = ("  a={:.3f} b={:.3f} c={:.3f} Å α={:.1f} β={:.1f} γ={:.1f}°".format(*lattice) if lattice else "")
    from ..evaluate.validity import MIN_DISTANCE

    close = entry.get("min_distance")
    warn = f"  (two atoms {close:.3f} Å apart: not physical)" if close is not None and close < MIN_DISTANCE else ""
    return f"{entry['file']}  {entry['formula']}  space group {sg} ({symbol})  {entry.get('wyckoff', '')}{cell}{origin}" \
        + _describe_energy(entry) + warn


def _sampler(args):
    """The SamplerConfig of predict / generate flags (--compile with several threads implies worker
    processes: one compiled network per process)."""
    import torch

    from ..sample.config import SamplerConfig

    processes = getattr(args, "processes", False) or (getattr(args, "compile", False) and torch.get_num_threads() > 1)
    return SamplerConfig(steps=args.steps, precision=args.precision, compile=getattr(args, "compile", False),
                         parallel="processes" if processes else "threads")


def _report_skipped(args, skipped: list) -> Path:
    """Write ``skipped.jsonl`` into --out and say how many rows of --csv were skipped and why."""
    from ..jobs import SKIPPED_FILE, write_skipped

    report = Path(args.out) / SKIPPED_FILE
    write_skipped(args.out, skipped)
    if skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in Counter(r["reason"] for r in skipped).most_common())
        print(f"{len(skipped)} row(s) of {args.csv} skipped ({reasons}); each with its reason in {report}")
    return report


def _warn_renamed(renamed: list) -> None:
    """One line on stderr for material ids that were repeated or unsafe as file names."""
    if renamed:
        print(f"diffcsp-pp predict: {len(renamed)} material id(s) repeated or not usable as file names, written as "
              + ", ".join(f"{raw!r} -> {name}" for raw, name in renamed[:3]) + (" ..." if len(renamed) > 3 else ""),
              file=sys.stderr)


def _predict_csv(args, model, writer, done, seed, sampler, devices) -> None:
    """Benchmark mode: one prediction per row from the row's own space group and Wyckoff template
    (:func:`diffcsp_pp.jobs.predict_dataset`; a rerun skips the finished batches and draws the rest
    exactly as an uninterrupted run would). Rows that cannot be predicted are reported (a count and
    ``skipped.jsonl``); repeated or unsafe material ids get unique safe names."""
    from ..jobs import SKIPPED_FILE, dataset_rows, predict_dataset
    from ..sample.writer import unique_names

    infos, skipped = dataset_rows(args.csv, model.config.symprec)
    infos = infos[: args.limit]
    report = _report_skipped(args, skipped) if _is_rank_zero() else Path(args.out) / SKIPPED_FILE
    if not infos:
        raise ValueError(f"no row of {args.csv} can be predicted ({len(skipped)} skipped; see {report})")
    names, renamed = unique_names([str(info.structure_id) for info in infos])
    if _is_rank_zero():
        _warn_renamed(renamed)
    finished = {i for i, name in enumerate(names) if name in done}

    def write(batch) -> None:
        writer.add((names[i], s, {"index": i, "material_id": str(info.structure_id), **s.properties})
                   for i, info, s in batch if i not in finished)

    predict_dataset(model.engine(sampler), infos, seed=seed, batch_size=args.batch_size, done=finished,
                    on_batch=write, progress=not args.quiet, devices=devices, keep=False)


def _formula_list(path) -> bool:
    """True for a CSV of formulas (:func:`diffcsp_pp.jobs.formula_source`); False for anything else,
    including a file the CSV reader will refuse with its own message."""
    from ..jobs import formula_source

    try:
        return formula_source(path) == "formula"
    except (OSError, ValueError):
        return False


def _predict_formula_csv(args, model, writer, done, seed, sampler) -> None:
    """Every row of --csv from its formula alone (:func:`diffcsp_pp.jobs.predict_formula_dataset`):
    the reduced composition of its structure, or its ``formula`` column; the --top-k (default -n)
    best-ranked templates each, written as ``<id>_rank<k>`` in rank order. Rows that cannot be
    predicted are reported (a count and ``skipped.jsonl``)."""
    from ..jobs import SKIPPED_FILE, formula_rows, predict_formula_dataset, write_skipped
    from ..sample.writer import unique_names

    rows, skipped = formula_rows(args.csv)
    rows = rows[: args.limit]
    if not rows:
        write_skipped(args.out, skipped)
        raise ValueError(f"no row of {args.csv} can be predicted ({len(skipped)} skipped; "
                         f"see {Path(args.out) / SKIPPED_FILE})")
    top_k = args.top_k or args.n
    names, renamed = unique_names([mid for _, mid, _ in rows])
    _warn_renamed(renamed)
    finished = {i for i, name in enumerate(names) if f"{name}_rank1" in done}
    failed: dict[int, dict] = {}

    def write(batch) -> None:
        for i, formula, result in batch:
            row, mid, _ = rows[i]
            if isinstance(result, Exception):
                failed[i] = {"row": row, "material_id": mid, "reason": "no_template", "detail": str(result)}
                continue
            if i in finished:
                continue
            result = _relax_and_rank(args, result)
            writer.add((f"{names[i]}_rank{k}", s, {"index": i, "material_id": mid, "query_formula": formula,
                                                   **s.properties})
                       for k, s in enumerate(result, start=1))

    predict_formula_dataset(model.engine(sampler), model.folder, [f for _, _, f in rows], top_k=top_k, seed=seed,
                            diff_ratio=args.diff_ratio, batch_size=args.batch_size, done=finished, on_batch=write,
                            progress=not args.quiet)
    _report_skipped(args, sorted(skipped + list(failed.values()), key=lambda r: (r["row"] is None, r["row"] or 0)))


def _devices(args, not_here: str | None = None):
    """The Lightning devices of --accelerator / --devices / --num-nodes (None: none given; the
    batches then run in this process, in threads or --processes). ``not_here``: the mode that
    does not take them."""
    from ..sample.distributed import Devices

    given = [f for f, v in (("--accelerator", args.accelerator), ("--devices", args.devices),
                            ("--num-nodes", args.num_nodes)) if v is not None]
    if not given:
        return None
    if not_here:
        raise ValueError(f"{', '.join(given)} apply to {not_here}")
    if args.device is not None:
        raise ValueError(f"--device is for one process; it excludes {', '.join(given)} (use --accelerator gpu)")
    devices = Devices(args.accelerator or "auto", args.devices or 1, args.num_nodes or 1)
    if devices.processes > 1 and getattr(args, "processes", False):
        raise ValueError("--processes applies to one process; with --devices / --num-nodes each process samples "
                         "its batches in threads")
    return devices


def _torch_device(args) -> str:
    """--device (default cpu), checked."""
    import torch

    if args.device is None:
        return "cpu"
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device must be a torch device such as cpu, cuda or cuda:1, got {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA GPU is available")
    if device.type != "cpu" and getattr(args, "processes", False):
        raise ValueError("--processes applies to --device cpu")
    return str(device)


def _writer(args, inputs: dict, devices, model):
    """The output writer: a run in this process writes (and locks at once) shard 0; each process of
    a Lightning run writes its own rank's shard. The manifest records ``model``'s weights."""
    from ..data.outputs import shard_name
    from ..sample.writer import PredictionWriter

    return PredictionWriter(args.out, inputs, shard=None if devices is not None else shard_name(0),
                            weights=model.folder.identity())


def _is_rank_zero() -> bool:
    """This process reports (rank 0 of a distributed run, or a run in one process)."""
    from ..sample.writer import process_rank

    return process_rank() == 0 and os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


# ----------------------------------------------------------------------------------- generate
def cmd_generate(args) -> int:
    """Ab initio generation in batches; each finished batch is written, a rerun skips finished ones."""
    from ..api import DEFAULT_GEN, DiffCSPPP
    from ..data import outputs
    from ..jobs import generate

    if args.wyckoff is not None and args.space_group is None:
        raise ValueError("--wyckoff needs --space-group")
    _check_before_load(args, "gen")
    devices = _devices(args)
    model = DiffCSPPP.load(args.model or DEFAULT_GEN, device=_torch_device(args))
    seed = 0 if args.seed is None else _check_seed(args.seed)
    plan = model.generation_plan(args.n, args.space_group, seed, args.wyckoff)
    inputs = {k: getattr(args, k) for k in ("n", "space_group", "wyckoff", "seed", "steps", "batch_size", "precision")}
    inputs["model"] = str(model.path)
    if args.compile:
        inputs["compile"] = True
    post = _relax_options(args, inputs, rank_allowed=False)
    base = _writer(args, inputs, devices, model)
    with base:
        writer = _relaxing_writer(args, base) if post else base
        done = writer.done()
        names = [f"gen_{i:06d}" for i in range(args.n)]
        finished = {i for i, name in enumerate(names) if name in done}

        def write(batch) -> None:
            writer.add((names[i], s, {"index": i, **s.properties}) for i, _, s in batch if i not in finished)

        generate(model.engine(_sampler(args)), plan, seed=seed, batch_size=args.batch_size, done=finished,
                 on_batch=write, progress=not args.quiet, devices=devices, keep=False)
    if not _is_rank_zero():
        return 0
    rate = outputs.summary(args.out)
    print(f"{rate['count']} structures in {args.out} (requested space group kept: "
          f"{100 * (rate['requested_space_group_rate'] or 0):.1f} %)")
    return 0


# -------------------------------------------------------------------------------------- relax
def _relax_settings(args):
    from ..relax import RelaxSettings

    return RelaxSettings(fmax=args.fmax, max_stress=args.max_stress, max_steps=args.relax_steps,
                         symprec=getattr(args, "symprec", None) or RelaxSettings.symprec, optimizer=args.optimizer)


def _relax_options(args, inputs: dict, rank_allowed: bool) -> bool:
    """Check --relax/--no-relax/--rank; record them in ``inputs``; True if outputs are post-processed."""
    # getattr: callers that build the argument namespace themselves may leave these flags out
    rank, relax_flag, no_relax = (getattr(args, k, None) for k in ("rank", "relax", "no_relax"))
    if relax_flag and no_relax:
        raise ValueError("--relax and --no-relax exclude each other")
    if rank and not rank_allowed:
        raise ValueError("--rank energy applies to --formula (with or without --space-group)")
    if no_relax and not rank:
        raise ValueError("--no-relax applies to --rank energy (rank by the energy before relaxation)")
    relax = bool(relax_flag) or bool(rank and not no_relax)
    if not (relax or rank):
        return False
    if relax:
        settings = _relax_settings(args)
        inputs["relax"] = {"potential": args.potential, "fmax": settings.fmax, "max_stress": settings.max_stress,
                           "max_steps": settings.max_steps, "optimizer": settings.optimizer}
    if rank:
        inputs["rank"] = rank if relax else f"{rank} (unrelaxed, {args.potential})"
    args._post = {"relax": relax, "rank": bool(rank)}
    return True


def _relax_and_rank(args, structures) -> list:
    """Formula modes of predict: relax (or score) and energy-rank the structures when asked."""
    post = getattr(args, "_post", None)
    if not post:
        return structures
    from ..relax import relax_and_rank

    out = relax_and_rank(structures, relax=post["relax"], rank=post["rank"], potential=args.potential,
                         settings=_relax_settings(args) if post["relax"] else None, progress=not args.quiet)
    _warn_relax(args, out)
    return out


def _relaxing_writer(args, writer):
    from ..relax import RelaxingWriter

    return RelaxingWriter(writer, args.potential, _relax_settings(args), on_batch=lambda out: _warn_relax(args, out))


def _warn_relax(args, structures) -> None:
    """One stderr line per relaxation that did not converge or was rejected."""
    for s in structures:
        r = (s.properties or {}).get("relax") or {}
        if r and r.get("status") != "converged":
            kept = "kept its last step" if r.get("relaxed") else "kept the unrelaxed structure"
            print(f"diffcsp-pp {args.command}: {s.composition.reduced_formula}: relaxation "
                  f"{r['status'].replace('_', ' ')} ({r.get('message', '')}); {kept}", file=sys.stderr)


def _describe_energy(entry: dict) -> str:
    r, e = entry.get("relax"), entry.get("energy_per_atom")
    if e is None:
        return ""
    if not r:
        return f"  E={e:.4f} eV/atom (unrelaxed)"
    return f"  E={e:.4f} eV/atom ({r['status'].replace('_', ' ')}, {r['steps']} steps)"


def cmd_relax(args) -> int:
    """Relax structures (output folders, CIF, POSCAR, extxyz) keeping their space group."""
    from ..data import outputs
    from ..data.outputs import shard_name
    from ..policy import check_output_folder
    from ..relax import load_potential, read_structures, relax_structures
    from ..sample.writer import PredictionWriter

    check_output_folder(args.out)
    settings = _relax_settings(args)
    items = read_structures(args.inputs)
    potential = load_potential(args.potential)  # a bad name fails before anything is written
    inputs = {"command": "relax", "inputs": [str(Path(p).resolve()) for p in args.inputs],
              "relax": {"potential": args.potential, **{k: getattr(settings, k) for k in
                                                        ("fmax", "max_stress", "max_steps", "symprec", "optimizer")}}}
    with PredictionWriter(args.out, inputs, shard=shard_name(0)) as writer:
        done = writer.done()
        todo = [(n, s) for n, s in items if n not in done]
        bad = []
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start : start + args.batch_size]
            results = relax_structures([s for _, s in chunk], potential, settings, batch_size=args.batch_size,
                                       progress=not args.quiet and len(todo) > 1)
            writer.add((n, r.structure, dict(r.structure.properties)) for (n, _), r in zip(chunk, results, strict=True))
            for (n, _), r in zip(chunk, results, strict=True):
                if r.status != "converged":
                    bad.append(f"{n}: relaxation {r.status.replace('_', ' ')} ({r.message})")
                    print(f"diffcsp-pp relax: {bad[-1]}", file=sys.stderr)
    manifest, entries = outputs.summary(args.out), outputs.records(args.out)
    if len(entries) <= 20:
        for e in entries:
            print(_describe(e))
    statuses = [e.get("relax", {}).get("status") for e in entries]
    print(f"{manifest['count']} structures in {args.out} ({statuses.count('converged')} converged, "
          f"{statuses.count('not_converged')} not converged, "
          f"{sum(s not in ('converged', 'not_converged') for s in statuses)} kept unrelaxed; requested space group "
          f"kept: {100 * (manifest['requested_space_group_rate'] or 0):.1f} %; potential {potential.name})")
    if args.strict and bad:
        raise ValueError(f"{len(bad)} relaxation(s) did not succeed (--strict); first: {bad[0]}")
    return 0


# ----------------------------------------------------------------------------------- evaluate
def _prediction_texts(path: Path) -> dict[str, list[tuple[str, str]]]:
    """material_id -> [(name, CIF text)] of every prediction, from a CSV (material_id, cif), an output
    folder of ``predict`` (any layout, :mod:`diffcsp_pp.data.outputs`) or a folder of CIFs named
    ``<material_id>.cif`` or ``<material_id>__<k>.cif``. A row's predictions are in the order of
    their ``rank`` when the folder's records give one (formula-only prediction), else in the
    folder's order. Nothing is parsed here (the evaluation's workers read the CIFs)."""
    from ..data import outputs
    from ..data.sources import is_csv, read_crystals

    texts: dict[str, list[tuple[str, str]]] = {}
    if path.is_dir():
        found = outputs.records(path)
        if not found:
            raise FileNotFoundError(f"{path} contains no .cif files")
        if all(isinstance(r.get("rank"), int) for r in found):
            found = sorted(found, key=lambda r: r["rank"])  # stable: rank k of every row before rank k + 1
        for r in found:
            mid = str(r.get("material_id") or r["name"].split("__")[0])
            texts.setdefault(mid, []).append((Path(r["file"]).name, (path / r["file"]).read_text(errors="replace")))
        return texts
    if not is_csv(path):
        raise ValueError(f"--pred must be a folder of CIFs or a CSV with material_id and cif columns: {path}")
    for i, raw in enumerate(read_crystals(path)):
        texts.setdefault(raw.material_id, []).append((f"{raw.material_id} (row {i})", raw.cif))
    return texts


def _read_predictions(path: Path) -> tuple[dict, list[str]]:
    """(material_id -> list of Structures, names of unreadable predictions) of :func:`_prediction_texts`:
    a prediction pymatgen cannot read (e.g. two atoms on one site) is left out (a miss for its row)
    and reported by name."""
    from ..data.sources import parse_cif

    preds: dict[str, list] = {}
    unreadable: list[str] = []
    for mid, items in _prediction_texts(path).items():
        preds[mid] = []
        for name, text in items:
            try:
                preds[mid].append(parse_cif(text))
            except Exception:  # noqa: BLE001 - an unreadable prediction is a miss for its row
                unreadable.append(name)
    return preds, unreadable


def cmd_evaluate(args) -> int:
    from ..data.registry import default_cache_dir
    from ..data.sources import parse_cif, read_crystals
    from ..evaluate.csp import (ReferenceValidityCache, csp_metrics, evaluate_csp, read_partial, row_json, row_key,
                                write_rows_csv)
    from ..policy import check, check_output_file

    check_output_file(args.out)
    check("workers", args.workers, "--workers")
    pred_path, ref_path = Path(args.pred), Path(args.ref)
    for p in (pred_path, ref_path):
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
    raw_refs = read_crystals(ref_path)
    refs = [(raw.material_id, parse_cif(raw.cif)) for raw in raw_refs]
    texts = _prediction_texts(pred_path)  # read (parsed) by the workers, and only for rows still to judge
    preds = {mid: [t for _, t in items] for mid, items in texts.items()}
    unknown = set(preds) - {mid for mid, _ in refs}
    if preds and len(unknown) == len(preds):
        raise ValueError(f"no prediction id matches a material_id of {ref_path} (e.g. {sorted(unknown)[:3]})")
    # rows judged by an interrupted run with the same inputs are kept beside the output and reused
    fingerprint = not args.no_fingerprint
    keys = [row_key(raw.cif, preds.get(raw.material_id, []), fingerprint, False) for raw in raw_refs]
    partial = Path(args.out).with_name(Path(args.out).name + ".partial.jsonl")
    done = read_partial(partial, keys, [len(preds.get(raw.material_id, [])) for raw in raw_refs])
    if done and not args.quiet:
        print(f"{len(done)} of {len(refs)} rows judged by an earlier run (kept in {partial}) are reused")
    cache = ReferenceValidityCache(default_cache_dir(), fingerprint)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a") as fh:
        def keep(row) -> None:
            fh.write(row_json(row, keys[row.row]) + "\n")
            fh.flush()

        metrics, rows = evaluate_csp(refs, preds, workers=args.workers, fingerprint=fingerprint,
                                     progress=not args.quiet, done=done, on_row=keep,
                                     reference_validity=[cache.get(raw.cif) for raw in raw_refs])
    cache.update({raw.cif: row.gt_valid for raw, row in zip(raw_refs, rows, strict=True)})
    unreadable = [texts[mid][i][0] for (mid, _), row in zip(refs, rows, strict=True) for i in row.unreadable]
    metrics["inputs"] = {"pred": str(pred_path), "ref": str(ref_path)}
    most = max((r.num_predictions for r in rows), default=0)
    if most > 1:  # ranked lists: top-1 and best-of-k over each row's first k predictions, no re-matching
        metrics["first_k"] = {}
        for k in sorted({1, 2, 3, 5, 10, most} & set(range(1, most + 1))):
            m = csp_metrics(rows, fingerprint=fingerprint, first=k)
            m.pop("protocol")
            metrics["first_k"][str(k)] = m
    metrics["unreadable_predictions"] = unreadable
    metrics["rows_reused"] = len(done)  # judged by an interrupted earlier run with the same inputs
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=1))
    rows_path = out.with_suffix(".rows.csv")
    write_rows_csv(rows_path, rows)
    partial.unlink(missing_ok=True)  # the metrics and per-row CSV now hold every row
    c = metrics["counts"]
    rmse = "n/a" if metrics["rmse"] is None else f"{metrics['rmse']:.4f}"
    print(f"match rate {100 * metrics['match_rate']:.2f} % ({c['matched']}/{c['rows']}), RMSE {rmse}; "
          f"ungated {100 * metrics['match_rate_ungated']:.2f} %")
    if most > 1:
        print(f"(best of up to {most} predictions per row; best of each row's first k: "
              + ", ".join(f"top-{k} {100 * m['match_rate']:.2f} %" for k, m in metrics["first_k"].items() if k != str(most))
              + ")")
    if c["rows_with_predictions"] < c["rows"]:
        print(f"over the {c['rows_with_predictions']} rows with predictions: "
              f"{100 * metrics['match_rate_over_predicted_rows']:.2f} %")
    if unreadable:
        print(f"{len(unreadable)} prediction(s) could not be read and count as misses "
              f"(listed in metrics.json): {', '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}")
    print(f"metrics {out}\nrows    {rows_path}")
    from ..evaluate.gen import dataset_symprec, detect_dataset
    from ..evaluate.plots import plot_csp, reference_crystal_systems

    systems = reference_crystal_systems([s for _, s in refs], dataset_symprec(detect_dataset(ref_path)))
    for plot in plot_csp(rows, systems, out.with_suffix("")):
        print(f"plot    {plot}")
    return 0


def cmd_evaluate_gen(args) -> int:
    from ..data.registry import default_cache_dir
    from ..evaluate.gen import COV_CUTOFFS, detect_dataset, evaluate_gen, read_generated
    from ..evaluate.gen import write_rows_csv as write_gen_rows
    from ..evaluate.plots import plot_gen
    from ..policy import check, check_output_file

    check_output_file(args.out)
    check("workers", args.workers, "--workers")
    pred_path, ref_path, train_path = Path(args.pred), Path(args.ref), Path(args.train)
    for p in (pred_path, ref_path, train_path):
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
    dataset = args.dataset or detect_dataset(ref_path) or detect_dataset(train_path)
    if dataset not in COV_CUTOFFS:
        raise ValueError(f"cannot tell the dataset of {ref_path} from its checksum; pass --dataset perov_5|mp_20|carbon_24")
    generated, requested = read_generated(pred_path)
    if not args.no_energy:
        import importlib.util

        if importlib.util.find_spec("chgnet") is None:
            raise ValueError("energies need CHGNet (pip install chgnet); or pass --no-energy")
        import torch

        torch.set_num_threads(args.workers)
    metrics, rows = evaluate_gen(
        generated, ref_path, train_path, dataset=dataset, requested=requested, workers=args.workers,
        energy=not args.no_energy, sample_size=args.sample_size, seed=args.seed,
        cache_dir=None if args.no_cache else default_cache_dir() / "evaluate", progress=not args.quiet,
        property_model=args.property_model, property_models_dir=args.property_models,
        composition_scaling=args.comp_scaling, hull=not args.no_hull, hull_train_max=args.hull_train_max,
    )
    metrics["inputs"] = {"pred": str(pred_path), "ref": str(ref_path), "train": str(train_path),
                         "dataset_from": "--dataset" if args.dataset else "checksum"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=1))
    rows_path = out.with_suffix(".rows.csv")
    write_gen_rows(rows_path, rows)

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f} %"

    def num(v):
        return "n/a" if v is None else f"{v:.4f}"

    c = metrics["counts"]
    print(f"{dataset}: {c['generated']} generated; struct valid {pct(metrics['struct_valid'])}, "
          f"comp valid {pct(metrics['comp_valid'])}, valid {pct(metrics['valid'])}")
    print(f"COV-R {pct(metrics['cov_recall'])}, COV-P {pct(metrics['cov_precision'])} "
          f"(cutoffs {metrics['protocol']['cov_cutoffs']['struct']:g}/{metrics['protocol']['cov_cutoffs']['comp']:g})")
    print(f"W1 over {metrics['property_sample_size']} valid: density {num(metrics['wdist_density'])}, "
          f"elements {num(metrics['wdist_num_elements'])}, d_E {num(metrics['wdist_prop'])} (paper's DimeNet++), "
          f"energy {num(metrics['wdist_energy'])} (CHGNet); comp valid with ICSD24 {pct(metrics['comp_valid_icsd24'])}")
    print(f"Wyckoff templates: {metrics['distinct_templates']} distinct, novel {pct(metrics['novel_template_rate'])} of "
          f"crystals; CHGNet training-set hull: stable {pct(metrics['stable_chgnet_hull'])}, S.U.N. "
          f"{pct(metrics['sun_chgnet_hull'])}, metastable (0.1 eV/atom) {pct(metrics['metastable_chgnet_hull'])}")
    for note in metrics["notes"]:
        print(f"note: {note}")
    print(f"uniqueness {pct(metrics['uniqueness'])}, novelty {pct(metrics['novelty'])}, "
          f"unique & novel {pct(metrics['unique_novel'])}; requested space group kept "
          f"{pct(metrics['requested_space_group_rate'])}; space-group JS distance to training "
          f"{num(metrics['space_group_js_distance_training'])}")
    print(f"metrics {out}\nrows    {rows_path}")
    for plot in plot_gen(metrics, out.with_suffix("")):
        print(f"plot    {plot}")
    return 0


def _add_output_args(p) -> None:
    """Flags shared by predict and generate: network precision, output folder, quiet."""
    p.add_argument("--precision", type=_sampler_precision, choices=["fp32", "bf16"], default="fp32",
                   help="network precision: fp32 (or 32-true) or bf16 (or bf16-mixed, as for train; faster on GPUs "
                        "and CPUs with AVX512-BF16; symmetry stays exact)")
    p.add_argument("--out", required=True, help="output folder (manifest.json, records/, cifs/, extxyz/)")
    p.add_argument("--quiet", action="store_true")


def _add_speed_args(p, scope: str) -> None:
    """Sampler parallelism flags (long runs of many batches: predict --csv, generate)."""
    p.add_argument("--processes", action="store_true",
                   help=f"{scope}sample the groups of crystals in worker processes, one per CPU thread, instead "
                        "of threads (faster for small crystals such as Perov-5; a few seconds to start)")
    p.add_argument("--compile", action="store_true",
                   help=f"{scope}torch.compile the network (needs a C++ compiler; ~10 s per process, then faster; "
                        "with several threads it implies --processes)")


def _sampler_precision(text: str) -> str:
    """--precision of predict / generate: train's spellings (32-true, bf16-mixed) name the same."""
    return {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16"}.get(text, text)


def _add_device_args(p, scope: str | None) -> None:
    """--accelerator / --devices / --num-nodes: Lightning, as for train (``scope``: the sampling
    modes that take them; None for train), and --device for one process (sampling)."""
    on = "" if scope is None else f"{scope}run the batches as Lightning predict steps; "
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help=f"{on}auto, cpu or gpu")
    p.add_argument("--devices", type=_positive_int, help=f"{on}processes/GPUs per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=_positive_int, help=f"{on}nodes (DDP)")
    if scope is not None:
        p.add_argument("--device", help="one process on this torch device (cpu, cuda, cuda:1; default cpu)")


def _add_relax_args(p, rank: bool) -> None:
    """Relaxation flags of predict / generate (and, without --relax, of relax)."""
    if rank is not None:
        p.add_argument("--relax", action="store_true",
                       help="relax every output with a universal potential, keeping its space group (default CHGNet)")
    if rank:
        p.add_argument("--rank", choices=["energy"],
                       help="order the -n / --top-k candidates by energy per atom after relaxation (implies --relax)")
        p.add_argument("--no-relax", action="store_true", help="with --rank energy: rank by the unrelaxed energy")
    p.add_argument("--potential", default="chgnet", help="chgnet (default), chgnet-0.2.0, mace, mattersim")
    p.add_argument("--fmax", type=_positive_float, default=0.05, help="largest force at convergence, eV/Å (0.05)")
    p.add_argument("--max-stress", type=_positive_float, default=0.05, help="largest stress at convergence, GPa (0.05)")
    p.add_argument("--relax-steps", type=_positive_int, default=300, help="optimizer steps at most (300)")
    p.add_argument("--optimizer", choices=["FIRE", "BFGS", "LBFGS"], default="BFGS", help="ASE optimizer (BFGS)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="diffcsp-pp", description="Space-group constrained crystal structure prediction (DiffCSP++)."
    )
    parser.add_argument("--version", action="version", version=f"diffcsp-pp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("symmetry", help="space group, Wyckoff orbits, k and lattice of a CIF")
    p.add_argument("file", help="a CIF file")
    p.add_argument("--symprec", type=_positive_float, default=0.1, help="spglib tolerance in Å (default 0.1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_symmetry)

    p = sub.add_parser("preprocess", help="analyse a CSV / CIF folder into a cached dataset")
    p.add_argument("input", help="CDVAE-format .csv/.csv.gz (cif column) or a folder of .cif files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--symprec", type=_positive_float, default=None,
        help="spglib tolerance in Å (default: 0.01 for Perov-5 files recognised by checksum, else 0.1)",
    )
    p.add_argument("--angle-tolerance", type=_positive_float, default=5.0, help="degrees (default 5)")
    p.add_argument("--workers", type=_positive_int, default=1, help="processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train a DiffCSP++ model (CSP or ab initio generation)")
    p.add_argument("--train", nargs="+", metavar="CSV", help="training CSV(s) / CIF folder(s); several are merged")
    p.add_argument("--val", nargs="+", metavar="CSV", help="validation CSV(s) / CIF folder(s)")
    p.add_argument("--task", choices=["csp", "gen"], default="csp", help="csp: types given; gen: types generated")
    p.add_argument("--preset", choices=["paper", "small"], default="small", help="model size and schedule")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", metavar="WEIGHTS", help="start from these weights (model.safetensors, a run dir or a bundled model's name, e.g. mp20-csp)")
    p.add_argument("--warmup-steps", type=_non_negative_int, metavar="N",
                   help=f"linear learning-rate warm-up over the first N steps (default: 0; {INIT_FROM_WARMUP} with "
                        "--init-from, whose fresh optimizer would otherwise jolt the trained weights)")
    p.add_argument("--hidden", type=_positive_int, help="override the preset's hidden size")
    p.add_argument("--layers", type=_positive_int, help="override the preset's number of layers")
    p.add_argument("--num-freqs", type=_positive_int, help="override the preset's Fourier frequencies")
    p.add_argument("--max-epochs", type=_positive_int)
    p.add_argument("--max-steps", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints")
    p.add_argument("--val-every", type=_positive_int, help="epochs between validations")
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=_positive_float)
    p.add_argument("--scheduler", choices=["plateau", "cosine", "none"])
    p.add_argument("--no-ema", action="store_true", help="no EMA of the weights")
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--precision", choices=["32-true", "bf16-mixed"])
    _add_device_args(p, None)
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads per process")
    p.add_argument("--max-cpu-hours", type=_positive_float,
                   help="stop with a checkpoint once the run has used this much CPU time (all sessions)")
    p.add_argument("--symprec", type=_positive_float, help="spglib tolerance for preprocessing")
    p.add_argument("--cache-dir", help="where preprocessed data are cached")
    p.add_argument("--workers", type=_positive_int, default=1, help="preprocessing processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict structures (formula alone, formula + space group, or every row of a CSV)")
    p.add_argument("--formula", help="e.g. SrTiO3 (reduced: formula units chosen to fit) or Sr2Ti2O6 (full cell)")
    p.add_argument("--space-group", type=int,
                   help="1-230 (default: retrieve training templates for the formula and refine them)")
    p.add_argument("--wyckoff", help="e.g. 'Sr:1a Ti:1b O:3c' (default: enumerated)")
    p.add_argument("-n", type=_positive_int, default=1, help="structures per formula")
    p.add_argument("--top-k", type=_positive_int,
                   help="formula alone (--formula without --space-group, --csv --from-formula): the K best-ranked "
                        "templates, one structure each (default -n)")
    p.add_argument("--diff-ratio", type=float,
                   help="without --space-group: refine from t0 = T x RATIO (0 < RATIO < 1; 0 = the substituted "
                        "templates as they are; default: the model card's measured choice, else 0.1)")
    p.add_argument("--csv", help="benchmark mode: one prediction per row from its own template (with --from-formula, "
                                 "or for a CSV with a 'formula' column and no 'cif' column: from each row's formula)")
    p.add_argument("--from-formula", action="store_true",
                   help="(--csv) predict each row from its formula alone (its structure's reduced composition): "
                        "the --top-k best-ranked templates, as --formula without --space-group does")
    p.add_argument("--limit", type=_positive_int, help="only the first N rows of --csv")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="crystals per sampler batch (--csv)")
    p.add_argument("--model", help="run directory or bundled model name")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=_positive_int, help="sampler steps (default: the paper's 999)")
    _add_output_args(p)
    _add_speed_args(p, "(--csv) ")
    _add_device_args(p, "(--csv) ")
    _add_relax_args(p, rank=True)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("generate", help="generate new crystals with an ab initio model (default mp20-gen)")
    p.add_argument("-n", type=_positive_int, required=True, help="number of crystals")
    p.add_argument("--space-group", type=int, help="1-230 (default: drawn from the training distribution)")
    p.add_argument("--wyckoff", help="Wyckoff pattern, e.g. '2a 2d 4g' (needs --space-group; default: drawn)")
    p.add_argument("--model", help="run directory or bundled model name (default mp20-gen)")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=_positive_int, help="sampler steps (default: the paper's 999)")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="crystals per sampler batch (default 100)")
    _add_output_args(p)
    _add_speed_args(p, "")
    _add_device_args(p, "")
    _add_relax_args(p, rank=False)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("relax", help="relax structures with a universal potential, keeping their space group")
    p.add_argument("inputs", nargs="+", metavar="DIR|FILE",
                   help="output folders of predict/generate, folders of structure files, CIF, POSCAR or extxyz files")
    p.add_argument("--out", required=True, help="output folder (manifest.json, records/, cifs/, extxyz/)")
    p.add_argument("--symprec", type=_positive_float, default=1e-3,
                   help="Å: tolerance of the starting symmetry (1e-3 suits this package's outputs; 0.01-0.1 for "
                        "experimental CIFs)")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="structures relaxed in lockstep (16)")
    p.add_argument("--strict", action="store_true", help="exit with status 2 if any relaxation did not converge")
    p.add_argument("--quiet", action="store_true")
    _add_relax_args(p, rank=None)
    p.set_defaults(func=cmd_relax)

    p = sub.add_parser("evaluate", help="metrics of predicted structures")
    ev = p.add_subparsers(dest="kind", required=True)
    q = ev.add_parser("csp", help="match rate and RMSE against reference structures (paper protocol)")
    q.add_argument("--pred", required=True, help="folder of <material_id>[__k].cif or CSV (material_id, cif)")
    q.add_argument("--ref", required=True, help="reference CSV (material_id, cif), e.g. a test split")
    q.add_argument("--out", required=True, help="metrics.json (per-row CSV written beside it)")
    q.add_argument("--workers", type=_positive_int, default=1)
    q.add_argument("--no-fingerprint", action="store_true", help="leave the CrystalNN fingerprint out of the validity gate")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_evaluate)
    q = ev.add_parser("gen", help="validity, coverage, property distances, uniqueness/novelty of generated crystals")
    q.add_argument("--pred", required=True, help="generate output folder (cifs/ + manifest.json), CIF folder or CSV")
    q.add_argument("--ref", required=True, help="reference CSV (material_id, cif), e.g. the test split")
    q.add_argument("--train", required=True, help="training CSV (composition scaling, novelty, space groups)")
    q.add_argument("--out", required=True, help="metrics.json (per-structure CSV and plots written beside it)")
    q.add_argument("--workers", type=_positive_int, default=1)
    q.add_argument("--no-energy", action="store_true", help="skip the CHGNet energies and their W1 distance")
    q.add_argument("--sample-size", type=_positive_int, default=1000, help="valid crystals in the property statistics")
    q.add_argument("--seed", type=int, default=0, help="seed of that sample (default 0)")
    q.add_argument("--dataset", choices=["perov_5", "mp_20", "carbon_24"],
                   help="COV cutoffs and symprec (default: recognised from the --ref checksum)")
    q.add_argument("--no-cache", action="store_true", help="do not cache reference/training fingerprints")
    q.add_argument("--property-model", default="auto", metavar="NAME|DIR",
                   help="d_E model: auto (the dataset's CDVAE DimeNet++ if found), none, mp20, perovskite, carbon or a folder")
    q.add_argument("--property-models", metavar="DIR", help="folder of the property models (default "
                   "$DIFFCSP_PP_PROPERTY_MODELS, else ../shared/models/cdvae-property)")
    q.add_argument("--comp-scaling", choices=["cdvae", "train"], default="cdvae",
                   help="COV composition scaling: CDVAE's constants (paper) or the training set's mean/std")
    q.add_argument("--no-hull", action="store_true", help="skip the CHGNet training-set hull (stability, S.U.N.)")
    q.add_argument("--hull-train-max", type=_positive_int, metavar="N",
                   help="build the hull from a seeded subset of N training crystals (default: all)")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_evaluate_gen)

    p = sub.add_parser("datasets", help="list the benchmark files the registry knows, or verify local copies")
    p.add_argument("--verify", metavar="DIR", help="check DIR/<dataset>/<split>.csv[.gz] against the checksums")
    p.set_defaults(func=cmd_datasets)
    from ..policy import LIMIT_NAMES, Limits

    defaults = ", ".join(f"{name}={getattr(Limits(), name)}" for name in LIMIT_NAMES)
    for q in [*sub.choices.values(), *ev.choices.values()]:
        if q is not sub.choices["evaluate"]:
            q.add_argument("--raise-limit", action="append", metavar="NAME=VALUE",
                           help=f"raise a resource limit (repeatable; defaults {defaults}; README, Security)")
    return parser


def _check_seed(seed: int) -> int:
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    return seed


#: Exit statuses of the error boundary (argparse's usage errors exit 2 as well).
EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 1, 130, 141


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 600 else text[:600] + " ..."


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffcsp-pp`` console script.

    The error boundary: every failure ends with one line on stderr, never a traceback. Bad input
    and fixable conditions (missing files, permissions, a full disk, limits, out of memory) exit
    2; an interrupt 130; a closed output pipe 141 silently; anything else is a bug and exits 1
    with its type (``DIFFCSP_PP_DEBUG=1`` shows the traceback).
    """
    from .. import policy
    from ..errors import DiffCSPError

    # spglib's C library prints its internal fallbacks (e.g. "get_bravais_exact_positions_and_lattice
    # failed.") to stderr; every result it returns is checked here anyway, so the CLI keeps them
    # off the terminal (SPGLIB_WARNING=ON in the environment shows them again)
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"diffcsp-pp {args.command}"
    previous = policy.limits()
    try:
        policy.set_limits(previous.raised(getattr(args, "raise_limit", None) or []))
        return int(args.func(args) or 0)
    except (DiffCSPError, ValueError, OSError) as err:  # OSError: missing files, permissions, disk full
        if isinstance(err, BrokenPipeError):
            return _broken_pipe()
        print(f"{prefix}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; what was finished is kept (the same command continues a predict or "
              "generate run, --resume a training run)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{prefix}: error: out of memory; lower -n, --batch-size or --workers", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # noqa: BLE001 - the boundary: a bug still ends in one line
        if os.environ.get("DIFFCSP_PP_DEBUG"):
            raise
        print(f"{prefix}: internal error ({type(err).__name__}): {_one_line(err)} (please report it; "
              "DIFFCSP_PP_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        policy.set_limits(previous)


def _broken_pipe() -> int:
    """The reader of stdout went away (``diffcsp-pp ... | head``): stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not raise again
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
