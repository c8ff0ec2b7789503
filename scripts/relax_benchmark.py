"""Benchmarks of symmetry-preserving relaxation (issue #19), through the user-facing commands.

    # (a) the 30 known compounds: predict from formula + space group (default model), relax, compare
    python scripts/relax_benchmark.py known --out runs/relax_bench/known
    # (c) MP-20 test subset: ground-truth templates (one sample; it relaxed; lowest energy of K
    #     relaxed samples) and formula alone (top-1; relaxed; lowest energy of the top-K relaxed);
    #     each stage on the first rows it reaches, resumable (rerun the same command to continue)
    python scripts/relax_benchmark.py mp20 --rows 500 --relax-rows 500 --k 10 --k-rows 500 \
        --formula-rows 500 --steps 100 --out /work/runs/relax_bench_mp20 [--minutes 60]
    # (b) cost: relaxation steps and seconds by cell size, from the relax manifests written above
    python scripts/relax_benchmark.py cost runs/relax_bench/known/relaxed /work/runs/relax_bench_mp20/relaxed_*
    # batched (lockstep) against one at a time, BFGS against FIRE
    python scripts/relax_benchmark.py batching --count 8

Every prediction and relaxation is a `diffcsp-pp predict` / `diffcsp-pp relax` / `diffcsp-pp
evaluate csp` run (a subprocess, as a user would type it); this script only chooses inputs, picks the
lowest-energy candidate per row from the relax manifests and tabulates. Each subcommand writes a
JSON summary and a markdown table into --out (or prints the cost table).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KNOWN = ROOT.parent / "shared" / "data" / "known" / "known_compounds.csv"
MP20_TEST = ROOT.parent / "shared" / "data" / "mp_20" / "test_full.csv.gz"


def cli(*args) -> float:
    """Run ``diffcsp-pp ARGS``; wall seconds. Exits on failure with its stderr."""
    cmd = [sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)]
    print("$ diffcsp-pp " + " ".join(map(str, args)), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    if res.stderr.strip():
        print(res.stderr.strip(), file=sys.stderr)
    return time.perf_counter() - t0


def manifest(folder: Path) -> dict:
    """The summary and the records (``entries``) of an output folder, any layout (the package's reader)."""
    from diffcsp_pp.data import outputs

    return {**outputs.summary(folder), "entries": outputs.records(folder)}


# -------------------------------------------------------------------------- known compounds
def _letters(description: str) -> list[tuple[str, str]]:
    """'Na:4a Cl:4b' -> [('Na', 'a'), ('Cl', 'b')] (multiplicities dropped)."""
    return [(tok.split(":")[0], tok.split(":")[1].lstrip("0123456789")) for tok in description.split()]


def same_wyckoff(space_group: int, predicted: str, known: str) -> bool:
    """Whether two Wyckoff descriptions are the same up to the group's Euclidean normaliser (the
    letter permutations of pyxtal's Wyckoff-set table, e.g. Na:4b Cl:4a = Na:4a Cl:4b in Fm-3m)."""
    from pyxtal.symmetry import Group

    target = sorted(_letters(known))
    pred = _letters(predicted)
    for perm in Group(space_group).get_alternatives()["Transformed WP"]:
        mapping = dict(zip("abcdefghijklmnopqrstuvwxyzA", perm.split()))
        if sorted((el, mapping.get(letter, letter)) for el, letter in pred) == target:
            return True
    return False


def _cell_errors(lattice: list[float], row: dict, n_atoms: int, n_exp: int) -> dict:
    from pymatgen.core import Lattice

    a, b, c, al, be, ga = lattice
    exp = [float(row[k]) for k in ("a", "b", "c", "alpha", "beta", "gamma")]
    v = Lattice.from_parameters(a, b, c, al, be, ga).volume / n_atoms
    v_exp = Lattice.from_parameters(*exp).volume / n_exp
    return {"a": 100 * (a / exp[0] - 1), "b": 100 * (b / exp[1] - 1), "c": 100 * (c / exp[2] - 1),
            "volume": 100 * (v / v_exp - 1), "same_cell_size": n_atoms == n_exp}


def cmd_known(args) -> None:
    from pyxtal.symmetry import Group

    out = Path(args.out)
    rows = list(csv.DictReader(open(KNOWN)))
    pred_dirs = []
    timings = {}
    for i, row in enumerate(rows):
        d = out / "pred" / f"{i:02d}_{row['formula']}_sg{row['space_group']}"
        if not (d / "manifest.json").is_file():
            extra = (["--model", args.model] if args.model else []) + (["--steps", args.steps] if args.steps else [])
            timings[d.name] = cli("predict", "--formula", row["formula"], "--space-group", row["space_group"],
                                  "--seed", args.seed, "--out", d, "--quiet", *extra)
        pred_dirs.append(d)
    relaxed = out / "relaxed"
    t_relax = cli("relax", *pred_dirs, "--out", relaxed, "--quiet") if not (relaxed / "manifest.json").is_file() \
        else None
    rel = {e["name"]: e for e in manifest(relaxed)["entries"]}
    table = []
    for row, d in zip(rows, pred_dirs, strict=True):
        [p] = manifest(d)["entries"]
        r = rel[p["name"]]
        sg = int(row["space_group"])
        n_exp = sum(Group(sg)[letter].multiplicity for _, letter in _letters(row["wyckoff"]))
        table.append({
            "formula": row["formula"], "name": row["name"], "space_group": sg, "known_wyckoff": row["wyckoff"],
            "predicted_wyckoff": p["wyckoff"], "wyckoff_match": same_wyckoff(sg, p["wyckoff"], row["wyckoff"]),
            "num_atoms": p["num_atoms"], "num_atoms_exp": n_exp,
            "unrelaxed": _cell_errors(p["lattice"], row, p["num_atoms"], n_exp),
            "relaxed": _cell_errors(r["lattice"], row, r["num_atoms"], n_exp),
            "relax_status": r["relax"]["status"], "steps": r["relax"]["steps"], "seconds": r["relax"]["seconds"],
            "energy_before": r["relax"]["energy_before"], "energy_after": r["relax"]["energy_after"],
            "group_kept": r["detected_space_group"] == sg, "predict_seconds": timings.get(d.name),
        })
    summary = {
        "rows": len(table), "model": args.model or "default (mp20-csp)", "seed": args.seed,
        "sampler_steps": args.steps or "default (999)",
        "wyckoff_match_rate": float(np.mean([t["wyckoff_match"] for t in table])),
        "relaxed_group_kept": int(sum(t["group_kept"] for t in table)),
        "converged": int(sum(t["relax_status"] == "converged" for t in table)),
        "relax_wall_seconds": t_relax,
    }
    for stage in ("unrelaxed", "relaxed"):
        vol = np.array([t[stage]["volume"] for t in table])
        lat = np.array([[t[stage][k] for k in "abc"] for t in table if t[stage]["same_cell_size"]])
        summary[stage] = {"median_abs_volume_error_pct": float(np.median(np.abs(vol))),
                          "mean_abs_volume_error_pct": float(np.mean(np.abs(vol))),
                          "within_3pct_volume": int((np.abs(vol) <= 3).sum()),
                          "median_abs_lattice_error_pct": float(np.median(np.abs(lat))) if len(lat) else None,
                          "rows_with_same_cell_size": int(len(lat))}
    (out / "summary.json").write_text(json.dumps({"summary": summary, "rows": table}, indent=1))
    lines = ["| compound | group | known Wyckoff | predicted Wyckoff | same | a, b, c error % (unrelaxed) | "
             "volume/atom error % (unrelaxed) | a, b, c error % (relaxed) | volume/atom error % (relaxed) | "
             "relax | steps | s | group kept |", "|" + "---|" * 13]
    for t in table:
        u, r = t["unrelaxed"], t["relaxed"]

        def abc(e):
            return ", ".join(f"{e[k]:+.1f}" for k in "abc") if e["same_cell_size"] else "(other cell)"

        lines.append(f"| {t['formula']} ({t['name']}) | {t['space_group']} | {t['known_wyckoff']} | "
                     f"{t['predicted_wyckoff']} | {'yes' if t['wyckoff_match'] else 'no'} | {abc(u)} | "
                     f"{u['volume']:+.1f} | {abc(r)} | {r['volume']:+.1f} | {t['relax_status']} | {t['steps']} | "
                     f"{t['seconds']:.1f} | {'yes' if t['group_kept'] else 'NO'} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))
    print("\n".join(lines))


# ------------------------------------------------------------------------------------ MP-20
class Deadline:
    """Wall-clock budget of a run: each CLI step gets the time left (and is stopped at the deadline;
    every step it runs resumes where it stopped, so the same command continues the run)."""

    def __init__(self, minutes: float | None):
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def run(self, *args, until=None) -> bool:
        """``diffcsp-pp ARGS`` within the budget; False if the budget ran out (before or during it).
        ``until()`` (polled every 10 s) True stops the command early (it resumes on a rerun)."""
        left = self.left()
        if left is not None and left <= 0:
            return False
        cmd = [sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)]
        print("$ diffcsp-pp " + " ".join(map(str, args)), flush=True)
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
            while proc.poll() is None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    left = self.left()
                    if (left is not None and left <= 0) or (until is not None and until()):
                        proc.terminate()
                        proc.wait()
                        print("  (stopped" + (" at the time limit" if left is not None and left <= 0 else
                                              ": enough rows for now") + "; it resumes on a rerun)", flush=True)
                        return until is not None and until() and not (left is not None and left <= 0)
            if proc.returncode != 0:
                err.seek(0)
                sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()}")
        return True


def _count(folder: Path) -> int:
    return manifest(folder)["count"] if (folder / "manifest.json").is_file() else 0


def _entries(folder: Path) -> dict:
    return {e["name"]: e for e in manifest(folder)["entries"]} if (folder / "manifest.json").is_file() else {}


def _by_row(folder: Path) -> dict[str, list[dict]]:
    """material_id -> the records of a formula-alone output folder, in template rank order."""
    rows: dict[str, list[dict]] = {}
    for e in _entries(folder).values():
        rows.setdefault(e["material_id"], []).append(e)
    return {m: sorted(es, key=lambda e: e.get("rank", 0)) for m, es in rows.items()}


def _energy(entry: dict) -> float:
    e = entry.get("energy_per_atom")
    return np.inf if e is None else float(e)


def _collect(out: Path, label: str, chosen: dict[str, Path], subset, evaluated: dict) -> None:
    """Evaluate ``chosen`` (material_id -> CIF) against its rows of ``subset`` with ``diffcsp-pp
    evaluate csp``; the metrics go into ``evaluated[label]``."""
    if not chosen:
        return
    folder = out / "eval" / label
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "cifs").mkdir(parents=True)
    for mid, cif in chosen.items():
        shutil.copy(cif, folder / "cifs" / f"{mid}.cif")
    ref = folder / "ref.csv"
    subset[subset.material_id.isin(list(chosen))].to_csv(ref, index=False)
    cli("evaluate", "csp", "--pred", folder / "cifs", "--ref", ref, "--out", folder / "metrics.json", "--quiet")
    res = json.loads((folder / "metrics.json").read_text())
    evaluated[label] = {"rows": len(chosen), "match_rate": res["match_rate"], "rmse": res["rmse"]}


def cmd_mp20(args) -> None:
    """Ground-truth templates (``predict --csv``, sample k seeded 1000·k) and formula alone
    (``predict --csv --from-formula --top-k K``: the row's reduced formula); every candidate relaxed
    with ``relax``. Stages, in order, each resumable: (1) one sample of all --rows; (2) it relaxed for
    the first --relax-rows; (3) samples 1..K-1, predicted and relaxed, for the first --k-rows;
    (4) formula alone, top-K, relaxed, for the first --formula-rows. Each metric is computed on the
    rows its stage finished, and the unrelaxed / relaxed one-sample metrics also on those rows."""
    import pandas as pd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset_file = out / f"test_subset_{args.rows}_seed{args.subset_seed}.csv"
    if not subset_file.is_file():
        pd.read_csv(MP20_TEST).sample(n=args.rows, random_state=args.subset_seed).to_csv(subset_file, index=False)
    subset = pd.read_csv(subset_file)
    ids = list(subset.material_id)
    extra = (["--model", args.model] if args.model else []) + (["--steps", args.steps] if args.steps else [])
    relax_extra = ["--batch-size", args.relax_batch, "--quiet"]
    clock = Deadline(args.minutes)

    def predict(k: int, enough: int) -> None:
        """Sample k of the subset (always ``--limit --rows``: a rerun with more rows resumes the
        same run), stopped once ``enough`` rows are written (it continues on a later call)."""
        s = out / f"sample_{k}"
        if _count(s) < enough:
            clock.run("predict", "--csv", subset_file, "--limit", args.rows, "--batch-size", args.predict_batch,
                      "--seed", 1000 * k, "--out", s, "--quiet", *extra,
                      until=None if enough >= args.rows else lambda: _count(s) >= enough)

    def relax(k: int, limit: int) -> None:
        """Relax the first ``limit`` rows of sample k: ``relax`` reads an output folder holding
        just those (``heads/sample_k``, rewritten as the limit grows; the relax run resumes)."""
        if _count(out / f"relaxed_{k}") >= limit or _count(out / f"sample_{k}") < limit:
            return
        src, view = out / f"sample_{k}", out / "heads" / f"sample_{k}"
        m = manifest(src)
        order = {mid: i for i, mid in enumerate(ids)}
        entries = sorted(m["entries"], key=lambda e: order[e["name"]])[:limit]
        shutil.rmtree(view, ignore_errors=True)
        (view / "cifs").mkdir(parents=True)
        flat = []  # a layout-1 view (entries in the manifest, CIFs in cifs/), which the reader takes
        for e in entries:
            rel = f"cifs/{Path(e['file']).name}"
            shutil.copy(src / e["file"], view / rel)
            flat.append({**e, "file": rel})
        head = {k: v for k, v in m.items() if k not in ("entries", "layout", "records")}
        (view / "manifest.json").write_text(json.dumps({**head, "count": len(flat), "entries": flat}, indent=1))
        clock.run("relax", view, "--out", out / f"relaxed_{k}", *relax_extra)

    # sample 0 of the rows the relaxation stages need first, the rest of the rows last
    predict(0, max(args.relax_rows, args.k_rows))
    relax(0, args.relax_rows)
    for k in range(1, args.k):
        predict(k, args.k_rows)
        relax(k, args.k_rows)
    # formula alone: one `predict --csv --from-formula` run over the first --formula-rows rows (the
    # row's reduced formula, its top-K templates, written <id>_rank<k>), then one `relax` of that folder
    # (its own folder per K); both resume where they stopped
    formula = out / f"formula_top{args.k}"
    if args.formula_rows:
        pred, rel = formula / "pred", formula / "relaxed"
        if len(_by_row(pred)) < args.formula_rows:
            clock.run("predict", "--csv", subset_file, "--limit", args.rows, "--from-formula", "--top-k", args.k,
                      "--seed", 0, "--out", pred, "--quiet", *extra,
                      until=lambda: len(_by_row(pred)) >= args.formula_rows)
        if _count(pred) and _count(rel) < _count(pred):
            clock.run("relax", pred, "--out", rel, *relax_extra)

    predict(0, args.rows)

    # ---- evaluation of what is finished
    evaluated: dict = {}
    sample = [_entries(out / f"sample_{k}") for k in range(args.k)]
    relaxed = [_entries(out / f"relaxed_{k}") for k in range(args.k)]
    cif = lambda k, kind, mid: out / f"{kind}_{k}" / (sample if kind == "sample" else relaxed)[k][mid]["file"]  # noqa: E731
    all_rows = [m for m in ids if m in sample[0]]
    _collect(out, "gt_one_sample_all", {m: cif(0, "sample", m) for m in all_rows}, subset, evaluated)
    b_rows = [m for m in all_rows if m in relaxed[0]]
    _collect(out, "gt_one_sample_relaxrows", {m: cif(0, "sample", m) for m in b_rows}, subset, evaluated)
    _collect(out, "gt_one_relaxed_relaxrows", {m: cif(0, "relaxed", m) for m in b_rows}, subset, evaluated)
    k_rows = [m for m in b_rows if all(m in r for r in relaxed)] if args.k > 1 else []
    if k_rows:
        _collect(out, "gt_one_sample_krows", {m: cif(0, "sample", m) for m in k_rows}, subset, evaluated)
        _collect(out, "gt_one_relaxed_krows", {m: cif(0, "relaxed", m) for m in k_rows}, subset, evaluated)
        for kk in sorted({kk for kk in (5, args.k) if kk <= args.k}):
            best = {m: min(range(kk), key=lambda j, m=m: (_energy(relaxed[j][m]), j)) for m in k_rows}
            _collect(out, f"gt_lowest_energy_of_{kk}_relaxed_krows", {m: cif(j, "relaxed", m) for m, j in best.items()},
                     subset, evaluated)
    fp, fr = _by_row(formula / "pred"), _entries(formula / "relaxed")  # material_id -> records by rank
    f_rows = [m for m in ids if m in fp and all(e["name"] in fr for e in fp[m])]
    if f_rows:
        rcif = lambda name: formula / "relaxed" / fr[name]["file"]  # noqa: E731
        _collect(out, "formula_top1", {m: formula / "pred" / fp[m][0]["file"] for m in f_rows}, subset, evaluated)
        _collect(out, "formula_top1_relaxed", {m: rcif(fp[m][0]["name"]) for m in f_rows}, subset, evaluated)
        for kk in sorted({kk for kk in (5, args.k) if kk <= args.k}):
            chosen = {}
            for m in f_rows:
                names = [e["name"] for e in fp[m][:kk]]
                chosen[m] = rcif(min(names, key=lambda n: (_energy(fr[n]), names.index(n))))
            _collect(out, f"formula_lowest_energy_of_top{kk}_relaxed", chosen, subset, evaluated)
    records = [e for ent in relaxed for e in ent.values()] + [fr[e["name"]] for m in f_rows for e in fp[m]]
    statuses = [e["relax"]["status"] for e in records]
    summary = {"rows": args.rows, "subset_seed": args.subset_seed, "k": args.k, "model": args.model or "mp20-csp",
               "sampler_steps": args.steps or "default (999)",
               "rows_done": {"one_sample": len(all_rows), "one_relaxed": len(b_rows), "k_samples_relaxed": len(k_rows),
                             "formula_top_k_relaxed": len(f_rows)},
               "metrics": evaluated, "relaxations": len(statuses),
               "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
               "requested_group_kept": int(sum(e["detected_space_group"] == e["space_group"] for e in records))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


# ------------------------------------------------------------------------------------- cost
def cmd_cost(args) -> None:
    rows = []
    for folder in map(Path, args.folders):
        m = manifest(folder)
        rows += [(e["num_atoms"], e["relax"]["steps"], e["relax"]["seconds"], e["relax"]["status"])
                 for e in m["entries"] if "relax" in e]
    bins = [(1, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 10**6)]
    print("| atoms (conventional cell) | relaxations | converged | median steps | median s | s per step |")
    print("|---|---|---|---|---|---|")
    for lo, hi in bins:
        sel = [r for r in rows if lo <= r[0] <= hi]
        if not sel:
            continue
        steps = np.array([r[1] for r in sel])
        secs = np.array([r[2] for r in sel])
        per = secs[steps > 0] / steps[steps > 0]
        label = f"{lo}-{hi}" if hi < 10**6 else f">= {lo}"
        print(f"| {label} | {len(sel)} | {sum(r[3] == 'converged' for r in sel)} | {np.median(steps):.0f} | "
              f"{np.median(secs):.1f} | {np.median(per) if len(per) else float('nan'):.3f} |")


# -------------------------------------------------------------------------------- batching
def cmd_batching(args) -> None:
    """BFGS and FIRE, lockstep batch against one crystal at a time, on a few MP-20 test crystals
    (ground truth, lattice stretched by 4 %: cell and positions have to move). Python API (the
    question is about the engine, not the command)."""
    import pandas as pd
    import torch

    from diffcsp_pp.data.sources import parse_cif
    from diffcsp_pp.relax import RelaxSettings, load_potential, relax_structures
    from diffcsp_pp.symmetry.analyze import analyze

    torch.set_num_threads(args.threads)
    df = pd.read_csv(MP20_TEST, nrows=400).sample(args.count, random_state=0)
    structures = []
    for cif in df.cif:
        s = analyze(parse_cif(cif), symprec=0.1).to_structure()
        s.scale_lattice(s.volume * 1.04**3)
        structures.append(s)
    print("atoms", [len(s) for s in structures])
    pot = load_potential("chgnet")
    relax_structures(structures[:1], pot, RelaxSettings(max_steps=1))  # warm-up
    for opt in ("BFGS", "FIRE"):
        for bs in (args.count, 1):
            t = time.perf_counter()
            res = relax_structures(structures, pot, RelaxSettings(optimizer=opt, max_steps=200), batch_size=bs)
            print(f"{opt} batch {bs}: {time.perf_counter() - t:.1f} s; steps {[r.steps for r in res]}; "
                  f"statuses {sorted({r.status for r in res})}; mean E {np.mean([r.energy_after for r in res]):.5f}",
                  flush=True)


def main() -> None:
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("known", help="the 30 known compounds")
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="default: the bundled default CSP model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="sampler steps (default: predict's, the paper's 999)")
    p.set_defaults(func=cmd_known)
    p = sub.add_parser("mp20", help="MP-20 test subset: ground-truth templates and formula alone")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=500, help="seeded subset of the test split; one sample each")
    p.add_argument("--relax-rows", type=int, help="first rows whose sample is relaxed (default --rows)")
    p.add_argument("--k-rows", type=int, default=0, help="first rows with K relaxed samples")
    p.add_argument("--formula-rows", type=int, default=0, help="first rows predicted from the formula (top-K)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10, help="candidates per row (lowest energy of 5 and of K)")
    p.add_argument("--model")
    p.add_argument("--steps", type=int, help="sampler steps (default: predict's, the paper's 999)")
    p.add_argument("--predict-batch", type=int, default=50, help="predict --batch-size (the unit a rerun resumes)")
    p.add_argument("--relax-batch", type=int, default=4, help="relax --batch-size (the unit a rerun resumes)")
    p.add_argument("--minutes", type=float, help="stop the work after this many minutes, then evaluate what is "
                   "finished (the same command continues)")
    p.set_defaults(func=cmd_mp20)
    p = sub.add_parser("cost", help="relaxation steps and seconds by cell size")
    p.add_argument("folders", nargs="+", help="relax output folders")
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("batching", help="lockstep batches against one at a time; BFGS against FIRE")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_batching)
    args = parser.parse_args()
    if getattr(args, "relax_rows", 0) is None:
        args.relax_rows = args.rows
    args.func(args)


if __name__ == "__main__":
    main()
