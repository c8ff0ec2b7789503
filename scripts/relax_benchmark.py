"""Benchmarks of symmetry-preserving relaxation (issue #19), through the user-facing commands.

    # (a) the 30 known compounds: predict from formula + space group (default model), relax, compare
    python scripts/relax_benchmark.py known --out runs/relax_bench/known
    # (c) MP-20 test subset, ground-truth templates: one sample, one relaxed, lowest energy of K relaxed
    python scripts/relax_benchmark.py mp20 --rows 500 --k 10 --out runs/relax_bench/mp20
    # (b) cost: relaxation steps and seconds by cell size, from the relax manifests written above
    python scripts/relax_benchmark.py cost runs/relax_bench/known/relaxed runs/relax_bench/mp20/relaxed_*
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
def cmd_mp20(args) -> None:
    import pandas as pd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset = out / f"test_subset_{args.rows}_seed{args.subset_seed}.csv"
    if not subset.is_file():
        df = pd.read_csv(MP20_TEST)
        df.sample(n=args.rows, random_state=args.subset_seed).to_csv(subset, index=False)
    extra = (["--model", args.model] if args.model else []) + (["--steps", args.steps] if args.steps else [])
    metrics = {}

    def evaluate(pred: Path, label: str) -> None:
        m = out / f"metrics_{label}.json"
        if not m.is_file():
            cli("evaluate", "csp", "--pred", pred, "--ref", subset, "--out", m, "--quiet")
        res = json.loads(m.read_text())
        metrics[label] = {"match_rate": res["match_rate"], "rmse": res["rmse"]}

    relaxed = []
    for k in range(args.k):
        s = out / f"sample_{k}"
        if not (s / "manifest.json").is_file() or manifest(s)["count"] < args.rows:
            cli("predict", "--csv", subset, "--seed", 1000 * k, "--out", s, "--quiet", *extra)
        r = out / f"relaxed_{k}"
        if not (r / "manifest.json").is_file() or manifest(r)["count"] < args.rows:
            cli("relax", s, "--out", r, "--quiet")
        relaxed.append(r)
    evaluate(out / "sample_0", "one_sample")
    evaluate(out / "relaxed_0", "one_relaxed")
    # lowest energy per atom of the first K relaxed candidates of each row
    entries = [{e["name"]: e for e in manifest(r)["entries"]} for r in relaxed]
    for k in sorted({kk for kk in (5, 10, args.k) if kk <= args.k}):
        best = out / f"lowest_energy_of_{k}"
        shutil.rmtree(best, ignore_errors=True)
        (best / "cifs").mkdir(parents=True)
        for name in entries[0]:
            cands = [(e[name].get("energy_per_atom") if e[name].get("energy_per_atom") is not None else np.inf, j)
                     for j, e in enumerate(entries[:k])]
            _, j = min(cands)
            shutil.copy(relaxed[j] / entries[j][name]["file"], best / "cifs" / f"{name}.cif")
        evaluate(best / "cifs", f"lowest_energy_of_{k}_relaxed")
    statuses = [e["relax"]["status"] for ent in entries for e in ent.values()]
    kept = [e["detected_space_group"] == e["space_group"] for ent in entries for e in ent.values()]
    summary = {"rows": args.rows, "subset_seed": args.subset_seed, "k": args.k, "model": args.model or "mp20-csp",
               "sampler_steps": args.steps or "default (999)",
               "metrics": metrics, "relaxations": len(statuses),
               "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
               "requested_group_kept": int(sum(kept))}
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
    p = sub.add_parser("mp20", help="MP-20 test subset with ground-truth templates")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10, help="candidates per row (lowest energy of 5 and of K)")
    p.add_argument("--model")
    p.add_argument("--steps", type=int, help="sampler steps (default: predict's, the paper's 999)")
    p.set_defaults(func=cmd_mp20)
    p = sub.add_parser("cost", help="relaxation steps and seconds by cell size")
    p.add_argument("folders", nargs="+", help="relax output folders")
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("batching", help="lockstep batches against one at a time; BFGS against FIRE")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_batching)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
