#!/usr/bin/env python
"""CSP from the formula alone (CSPML-style templates + partial-noise refinement) on a test split.

Usage (Perov-5, the bundled model and its template index):
    python scripts/template_benchmark.py --model perov5-csp --test /work/shared/data/perov_5/test.csv.gz \
        --out docs/bench/cspml_perov5.json [--limit 500] [--no-fingerprint]
MP-20-lite (builds the index into the model folder first if it has none):
    python scripts/template_benchmark.py --model RUN_OR_NAME --train data/mp20_lite/train.csv.gz \
        --val data/mp20_lite/val.csv.gz --test /work/shared/data/mp_20/pilot_test.csv.gz \
        --out docs/bench/cspml_mp20lite.json

For every test row the query is the reduced formula of its CSV structure. The top-k templates
(default 5) are retrieved and substituted exactly as ``DiffCSPPP.predict(formula)`` does, then:

- **template only** (the paper's "CSPML" row): the substituted template itself (template lattice
  and coordinates, new species);
- **refined** ("DiffCSP++ w/ CSPML templates"): each template refined from t0 = T * diff_ratio.

Both are scored top-1 (rank 1 only) and best-of-k with ``diffcsp_pp.evaluate.csp.evaluate_csp``
(paper protocol: StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), validity-gated, reference =
the raw CSV CIF). Rows without any candidate template are predicted by the enumerated fallback of
``predict`` (full sampling) in the refined columns and count as misses in the template-only ones.
Results are merged into ``--out`` under ``runs[<label>]``. One process, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PAPER = {"perov_5": {"cspml_template_only": {"match_rate": 0.5184, "rmse": 0.1066},
                     "diffcsp++_w_cspml": {"match_rate": 0.5217, "rmse": 0.0841}},
         "mp_20": {"cspml_template_only": {"match_rate": 0.7051, "rmse": 0.0338},
                   "diffcsp++_w_cspml": {"match_rate": 0.7058, "rmse": 0.0272}},
         "source": "METHOD.md §8.1 (one sample per test structure)"}


def _reduced(structure) -> dict[str, int]:
    amounts = {el.symbol: int(round(n)) for el, n in structure.composition.element_composition.items()}
    g = math.gcd(*amounts.values())
    return {el: n // g for el, n in amounts.items()}


def _metrics(refs, preds, args, label) -> tuple[dict, dict]:
    """(top-1, best-of-k) metrics from one evaluation of every ranked prediction."""
    from diffcsp_pp.evaluate.csp import csp_metrics, evaluate_csp

    start = time.perf_counter()
    _, rows = evaluate_csp(refs, preds, workers=args.workers, fingerprint=not args.no_fingerprint,
                           progress=not args.quiet)
    wall = round(time.perf_counter() - start, 1)
    out = []
    for first, name in ((1, "top-1"), (None, f"best-of-{args.top_k}")):
        metrics = csp_metrics(rows, fingerprint=not args.no_fingerprint, first=first)
        metrics.pop("protocol", None)
        metrics["eval_wall_s"] = wall  # of the shared evaluation
        print(f"{label + ' ' + name:<28} match rate {100 * metrics['match_rate']:.2f} %  RMSE "
              f"{metrics['rmse'] if metrics['rmse'] is None else round(metrics['rmse'], 4)}  "
              f"(ungated {100 * metrics['match_rate_ungated']:.2f} %)", flush=True)
        out.append(metrics)
    return out[0], out[1]


def _cached(path: Path, make):
    """Structures of one refinement chunk: loaded from ``path`` (JSON of Structure dicts) if a previous
    run wrote it, else made and written, so an interrupted benchmark resumes where it stopped."""
    from pymatgen.core import Structure

    if path.is_file():
        return [Structure.from_dict(d) for d in json.loads(path.read_text())]
    from diffcsp_pp.atomic import write_atomic

    structures = make()
    write_atomic(path, json.dumps([st.as_dict() for st in structures]))
    return structures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="CSPML-style template CSP benchmark")
    parser.add_argument("--model", default="perov5-csp", help="bundled model name or model folder")
    parser.add_argument("--test", default="/work/shared/data/perov_5/test.csv.gz")
    parser.add_argument("--train", nargs="+", help="training CSV(s): build the index if the model has none")
    parser.add_argument("--val", nargs="+", help="validation CSV(s): train the scorer when building the index")
    parser.add_argument("--limit", type=int, help="a fixed random subset of this many test rows (seed --subset-seed)")
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--diff-ratio", type=float, default=0.1)
    parser.add_argument("--steps", type=int, help="refinement steps (default: all t0 steps)")
    parser.add_argument("--step-lr", type=float, help="Langevin step (default: the model's CSP default)")
    parser.add_argument("--fallback-steps", type=int, help="sampler steps for rows without a template (default 999)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=100, help="test rows per refinement call (and per saved file)")
    parser.add_argument("--workers", type=int, default=1, help="evaluation processes")
    parser.add_argument("--no-fingerprint", action="store_true", help="no CrystalNN fingerprint in the validity gate")
    parser.add_argument("--ranker", choices=["model", "euclidean", "mlp", "mlp_no_exact_first"], default="model",
                        help="template ranking: the model's template_scorer.json (default) or an override (ablation)")
    parser.add_argument("--label", help="key of this run in the output's 'runs' (default from the settings)")
    parser.add_argument("--substitution-study", metavar="VAL_CSV",
                        help="instead of the benchmark: compare substitution property sets on validation rows")
    parser.add_argument("--study-rows", type=int, default=600)
    parser.add_argument("--out", required=True, help="JSON file (runs are merged into it)")
    parser.add_argument("--work", help="folder of finished refinement chunks (default: next to --out); a rerun "
                                       "with the same settings reuses them")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from diffcsp_pp import DiffCSPPP
    from diffcsp_pp.data.registry import find_by_checksum
    from diffcsp_pp.data.sources import content_hash, parse_cif, read_crystals
    from diffcsp_pp.retrieval.fallback import enumerated_templates
    from diffcsp_pp.retrieval.index import build_template_index
    from diffcsp_pp.retrieval.retrieve import retrieve
    from diffcsp_pp.retrieval.scorer import Scorer
    from diffcsp_pp.sample.config import SamplerConfig
    from diffcsp_pp.sample.refine import start_step
    from diffcsp_pp.symmetry.templates import build_template

    model = DiffCSPPP.load(args.model)
    folder = model.folder
    if not folder.has_template_index():
        if not args.train:
            print(f"error: {model.path} has no {folder.INDEX}; give --train (and --val) to build it", file=sys.stderr)
            return 2
        from diffcsp_pp.retrieval.train import fit_scorer

        index, _ = build_template_index(args.train, symprec=model.config.symprec, progress=not args.quiet)
        folder.write_template_index(index)
        folder.write_scorer(fit_scorer(index, args.train, args.val, symprec=model.config.symprec, progress=not args.quiet)
                            if args.val else Scorer("euclidean"))
    index, scorer = folder.template_index()
    if args.ranker != "model":
        if args.ranker != "euclidean" and scorer.mlp is None:
            print(f"error: {model.path} has no trained MLP scorer", file=sys.stderr)
            return 2
        scorer = Scorer("euclidean" if args.ranker == "euclidean" else "mlp", scorer.mlp, scorer.info,
                        exact_first=args.ranker != "mlp_no_exact_first")
    if args.substitution_study:
        return substitution_study(index, args)
    # the engine of predict_from_formula (refinement with the group check); the model's γ unless --step-lr
    engine = model.engine(SamplerConfig(steps=args.steps, step_lr=args.step_lr, progress=not args.quiet))
    lr = engine.config.step_lr
    t0 = start_step(model.config.diffusion.timesteps, args.diff_ratio)

    test = Path(args.test)
    raws = read_crystals(test)
    rows = list(range(len(raws)))
    if args.limit and args.limit < len(raws):
        rows = sorted(np.random.default_rng(args.subset_seed).choice(len(raws), args.limit, replace=False).tolist())
    refs = [(raws[i].material_id, parse_cif(raws[i].cif)) for i in rows]
    print(f"{len(refs)} test rows of {test.name}; {len(index)} templates; ranker {scorer.kind}", flush=True)
    subset = None if len(refs) == len(raws) else {"rows": len(refs), "of": len(raws), "seed": args.subset_seed}
    label = args.label or f"{'all' if subset is None else len(refs)}rows_top{args.top_k}" \
                          f"{'' if not args.no_fingerprint else '_nofp'}{'' if args.ranker == 'model' else '_' + args.ranker}"
    import hashlib

    weights = hashlib.sha256(folder.weights_bytes()).hexdigest()
    settings = {"model": str(model.path.resolve()), "weights_sha256": weights, "test": str(test.resolve()), "rows": rows, "ranker": args.ranker,
                "top_k": args.top_k, "diff_ratio": args.diff_ratio, "steps": args.steps, "step_lr": lr,
                "fallback_steps": args.fallback_steps, "seed": args.seed, "chunk": args.chunk,
                "group_check": True}  # outputs that gained symmetry are redrawn, as predict_from_formula does
    work = Path(args.work) if args.work else Path(args.out).parent / f"{Path(args.out).stem}.{label}.work"
    work.mkdir(parents=True, exist_ok=True)
    if (work / "settings.json").is_file() and json.loads((work / "settings.json").read_text()) != settings:
        print(f"error: {work} holds chunks of other settings; remove it or give another --work", file=sys.stderr)
        return 2
    (work / "settings.json").write_text(json.dumps(settings))

    # retrieval + substitution
    start = time.perf_counter()
    cands, missing = {}, []
    for mid, s in refs:
        found = retrieve(index, scorer, _reduced(s), top_k=args.top_k)
        if found:
            cands[mid] = found
        else:
            missing.append((mid, s))
    retrieval_s = time.perf_counter() - start
    print(f"retrieval: {len(cands)} rows with templates, {len(missing)} without ({retrieval_s:.0f} s)", flush=True)
    template_only = {mid: [c.info.to_structure() for c in cs] for mid, cs in cands.items()}

    # refinement of every retrieved template
    reused = sorted(p.name for p in work.glob("*.json") if p.name != "settings.json")  # timings below exclude these
    start = time.perf_counter()
    refined: dict[str, list] = {}
    mids = list(cands)
    for c, lo in enumerate(range(0, len(mids), args.chunk)):
        chunk = mids[lo : lo + args.chunk]
        infos = [cand.info for mid in chunk for cand in cands[mid]]
        out = iter(_cached(work / f"refined_{c:04d}.json", lambda infos=infos, c=c: [
            d.structure for d in engine.refine(infos, seed=args.seed + c, diff_ratio=args.diff_ratio)]))
        for mid in chunk:
            refined[mid] = [next(out) for _ in cands[mid]]
        if not args.quiet:
            print(f"  refined {min(lo + args.chunk, len(mids))}/{len(mids)} rows ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    refine_s = time.perf_counter() - start

    # rows without a candidate: the enumerated fallback of predict(), full sampling
    start = time.perf_counter()
    fallback_rules: dict[str, int] = {}
    if missing:
        plan = []
        for mid, s in missing:
            ranked = enumerated_templates(_reduced(s), folder.template_stats().counts, limit=args.top_k,
                                          max_atoms=index.max_atoms)
            for e in ranked:
                fallback_rules[e.rule] = fallback_rules.get(e.rule, 0) + 1
            plan.append((mid, [build_template(e.space_group, e.sites) for e in ranked]))
        templates = [t for _, ts in plan for t in ts]
        if templates:
            full = engine.with_config(engine.config.replace(steps=args.fallback_steps))  # predict's enumerated fallback
            out = iter(_cached(work / "fallback.json", lambda: [
                d.structure for d in full.draw(templates, seed=args.seed + 10_000)]))
            for mid, ts in plan:
                if ts:
                    refined[mid] = [next(out) for _ in ts]
    fallback_s = time.perf_counter() - start

    results = {}
    for name, preds in (("template_only", template_only), ("refined", refined)):
        results[f"{name}_top1"], results[f"{name}_best_of_{args.top_k}"] = _metrics(refs, preds, args, name)
    known = None if test.is_dir() else find_by_checksum(content_hash(test))
    n_refined = sum(len(v) for v in cands.values())
    run = {
        "test": test.name, "test_registry_name": known.name if known else None, "rows": len(refs),
        "subset": subset,
        "ranker": {"kind": scorer.kind, "exact_first": scorer.exact_first,
                   "source": "template_scorer.json" if args.ranker == "model" else f"--ranker {args.ranker}"},
        "top_k": args.top_k, "diff_ratio": args.diff_ratio, "t0": t0,
        "refine_steps": args.steps or t0, "network_evaluations_per_refinement": 2 * (args.steps or t0),
        "step_lr": lr, "seed": args.seed, "fingerprint_gate": not args.no_fingerprint,
        "rows_with_templates": len(cands), "rows_without_templates": len(missing),
        "fallback_templates_by_rule": fallback_rules,
        "rows_top1_same_composition": sum(_same(cs[0]) for cs in cands.values()),
        "timing_s": {"retrieval": round(retrieval_s, 1), "refinement": round(refine_s, 1), "refined_structures": n_refined,
                     "fallback_sampling": round(fallback_s, 1), "reused_from_work_folder": reused},
        "results": results,
        "command": " ".join(["python scripts/template_benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    out = Path(args.out)
    payload = json.loads(out.read_text()) if out.is_file() else {}
    payload.update({
        "benchmark": "CSP from the formula alone: CSPML-style template retrieval + partial-noise refinement",
        "model": {"path": str(model.path.name), "dataset": model.config.dataset, "templates": len(index),
                  "index_meta": index.meta},
        "scorer": {"kind": folder.template_index()[1].kind, "exact_first": folder.template_index()[1].exact_first,
                   **{k: v for k, v in scorer.info.items() if k in
                      ("variant", "chosen_by", "training", "validation", "pairs", "positive_cutoff")}},
        "paper": PAPER,
    })
    payload.setdefault("runs", {})[label] = run
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {out} (runs[{label!r}])")
    return 0


def substitution_study(index, args) -> int:
    """Template-only match rate (top-1, best of 5) on validation rows with the two candidate sets of
    elemental properties, using only templates whose composition differs from the query's (an
    identical composition needs no substitution). Ranked with the Euclidean scorer."""
    from diffcsp_pp.data.sources import parse_cif, read_crystals
    from diffcsp_pp.evaluate.csp import evaluate_csp
    from diffcsp_pp.retrieval.retrieve import retrieve
    from diffcsp_pp.retrieval.scorer import Scorer
    from diffcsp_pp.retrieval.substitution import MAGPIE_PROPERTIES, SUBSTITUTION_PROPERTIES

    raws = read_crystals(args.substitution_study)
    pick = sorted(np.random.default_rng(args.subset_seed).choice(len(raws), min(args.study_rows, len(raws)),
                                                                 replace=False).tolist())
    refs = [(raws[i].material_id, parse_cif(raws[i].cif)) for i in pick]
    study = {"val": Path(args.substitution_study).name, "rows": len(refs), "subset_seed": args.subset_seed,
             "ranker": "euclidean", "templates": "best 5 candidates whose composition differs from the query's",
             "fingerprint_gate": False, "sets": {}}
    for name, props in [("chosen (SUBSTITUTION_PROPERTIES)", SUBSTITUTION_PROPERTIES),
                        ("magpie_22 (MAGPIE_PROPERTIES)", MAGPIE_PROPERTIES)]:
        preds = {}
        for mid, s in refs:
            found = retrieve(index, Scorer("euclidean"), _reduced(s), top_k=40, properties=props, distinct=False)
            found = [c for c in found if not _same(c)][:5]
            if found:
                preds[mid] = [c.info.to_structure() for c in found]
        m1, _ = evaluate_csp(refs, {k: v[:1] for k, v in preds.items()}, fingerprint=False, progress=False)
        m5, _ = evaluate_csp(refs, preds, fingerprint=False, progress=False)
        study["sets"][name] = {"properties": list(props), "rows_with_templates": len(preds),
                               "top1_match_rate": m1["match_rate"], "top1_rmse": m1["rmse"],
                               "best_of_5_match_rate": m5["match_rate"], "best_of_5_rmse": m5["rmse"]}
        print(name, json.dumps(study["sets"][name]), flush=True)
    out = Path(args.out)
    payload = json.loads(out.read_text()) if out.is_file() else {}
    payload["substitution_study"] = study
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {out} (substitution_study)")
    return 0


def _same(candidate) -> bool:
    """Whether the top template has exactly the query's composition (all substitutions identities)."""
    return all(k == v for k, v in candidate.substitution.items())


if __name__ == "__main__":
    sys.exit(main())
