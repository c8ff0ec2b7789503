"""Fitting and choosing the template scorer of an index (used by ``scripts/build_template_index.py``).

:func:`fit_scorer` trains the CSPML-style pair MLP (:mod:`.scorer`) on pairs of training crystals
with the same count pattern, then compares it with the Euclidean baseline on held-out validation
data in two ways:

- **pairs**: accuracy and ROC AUC on validation pairs (labels from the structure fingerprints; the
  baseline's distance threshold is the accuracy-optimal one on the training pairs);
- **ranking** (what retrieval does): for validation crystals, the training candidates with their
  count pattern are ranked by each scorer (as retrieval ranks: identical compositions first); reported are the fraction whose top-1 (and best of
  top-5) template is a "positive" (structure-fingerprint distance <= 0.3 to the validation
  crystal's true structure), the mean top-1 distance, and for reference a random candidate's and
  the best candidate's (oracle) figures.

- **template-only CSP** (the end use): on ``match_queries`` validation rows, the match rate of the
  substituted top-1 template (and the best of the top 5) against the row's CSV structure.

Three rankers are compared: ``euclidean``, ``mlp`` (identical compositions first, see
:meth:`~.scorer.Scorer.rank`) and ``mlp_no_exact_first`` (the plain MLP order, as the original
CSPML). The one with the highest template-only top-1 match rate is used (ties: best of 5, then the
fingerprint ranking figures, then the order listed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .fingerprints import POSITIVE_CUTOFF, composition_features, structure_fingerprints
from .index import TemplateIndex, _counts_of, count_key
from .scorer import PairMLP, Scorer, best_threshold, pair_metrics, sample_pairs, train_scorer


def _fingerprints_for(files: Sequence, ids: Sequence[str], progress: bool) -> np.ndarray:
    table: dict[str, np.ndarray] = {}
    for f in files:
        mids, fps = structure_fingerprints(f, progress=progress)
        table.update(zip(mids, fps, strict=True))
    nan = np.full(fps.shape[1], np.nan)
    return np.stack([table.get(str(m), nan) for m in ids])


def _groups(keys: Sequence[str]) -> np.ndarray:
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(str(k), len(ids)) for k in keys])


def ranking_quality(index: TemplateIndex, train_fps: np.ndarray, queries: Sequence, query_features: np.ndarray,
                    query_fps: np.ndarray, scorers: dict[str, Scorer], top: int = 5) -> dict:
    """Top-1 / best-of-``top`` structure-fingerprint hit rates of each scorer over validation queries."""
    stats = {name: {"top1_hits": 0, f"top{top}_hits": 0, "top1_distance": []} for name in scorers}
    n_queries = random_hits = oracle_hits = 0
    for q, feat, fp in zip(queries, query_features, query_fps, strict=True):
        if np.isnan(fp).any():
            continue
        found = [i for i, _ in index.candidates(_counts_of(q))]
        found = [i for i in found if not np.isnan(train_fps[i]).any()]
        if not found:
            continue
        rows = np.array(found)
        dist = np.linalg.norm(train_fps[rows] - fp[None, :], axis=-1)
        n_queries += 1
        random_hits += float((dist <= POSITIVE_CUTOFF).mean())
        oracle_hits += bool((dist <= POSITIVE_CUTOFF).any())
        for name, scorer in scorers.items():
            order, _ = scorer.rank(feat, index.features[rows])
            stats[name]["top1_hits"] += bool(dist[order[0]] <= POSITIVE_CUTOFF)
            stats[name][f"top{top}_hits"] += bool((dist[order[:top]] <= POSITIVE_CUTOFF).any())
            stats[name]["top1_distance"].append(float(dist[order[0]]))
    out = {"queries_with_candidates": n_queries, "queries": len(queries),
           "random_candidate_hit_rate": random_hits / max(n_queries, 1),
           "oracle_hit_rate": oracle_hits / max(n_queries, 1)}
    for name, s in stats.items():
        out[name] = {"top1_hit_rate": s["top1_hits"] / max(n_queries, 1),
                     f"top{top}_hit_rate": s[f"top{top}_hits"] / max(n_queries, 1),
                     "mean_top1_distance": float(np.mean(s["top1_distance"])) if s["top1_distance"] else None}
    return out


def template_match_rates(index: TemplateIndex, queries: Sequence, query_features: np.ndarray, references: dict,
                         scorers: dict[str, Scorer], top: int = 5) -> dict:
    """Template-only CSP match rate (top-1 and best of ``top``; StructureMatcher protocol of
    :func:`~diffcsp_pp.evaluate.csp.evaluate_csp`, no fingerprint gate) of each scorer's ranking
    over validation queries; ``references``: material id -> raw CSV Structure."""
    import math

    from ..evaluate.csp import evaluate_csp
    from .retrieve import retrieve

    refs = [(q.structure_id, references[q.structure_id]) for q in queries if q.structure_id in references]
    out = {"queries": len(refs)}
    for name, scorer in scorers.items():
        preds = {}
        for q, feat in zip(queries, query_features, strict=True):
            counts = _counts_of(q)
            g = math.gcd(*counts.values())
            found = retrieve(index, scorer, {el: n // g for el, n in counts.items()}, top_k=top, features=feat)
            if found:
                preds[q.structure_id] = [c.info.to_structure() for c in found]
        m1, _ = evaluate_csp(refs, {k: v[:1] for k, v in preds.items()}, fingerprint=False, progress=False)
        mk, _ = evaluate_csp(refs, preds, fingerprint=False, progress=False)
        out[name] = {"top1_match_rate": m1["match_rate"], "top1_rmse": m1["rmse"],
                     f"best_of_{top}_match_rate": mk["match_rate"], f"best_of_{top}_rmse": mk["rmse"]}
    return out


def fit_scorer(index: TemplateIndex, train_files: Sequence, val_files: Sequence, symprec: float | None = None,
               num_pairs: int = 100_000, num_val_pairs: int = 10_000, epochs: int = 40, rank_queries: int = 1000,
               match_queries: int = 600, seed: int = 0, progress: bool = True) -> Scorer:
    """Train the pair MLP, compare it with the Euclidean baseline on validation, return the better one
    (the comparison and the training summary are in ``scorer.info``)."""
    import torch

    from ..data.preprocess import PreprocessConfig, preprocess
    from ..data.registry import default_cache_dir
    from ..data.store import load_records

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    train_fps = _fingerprints_for(train_files, index.material_id, progress)
    val_infos = []
    for f in val_files:
        res = preprocess(f, default_cache_dir() / "preprocessed", PreprocessConfig(symprec=symprec), progress=progress)
        val_infos.extend(load_records(res.output))
    val_fps = _fingerprints_for(val_files, [i.structure_id for i in val_infos], progress)
    val_feats = index.standardizer(composition_features([_counts_of(i) for i in val_infos]))
    train_feats = index.features.astype(np.float64)

    tr_pairs = sample_pairs(_groups(index.count_keys), train_fps, num_pairs, rng)
    va_pairs = sample_pairs(_groups([count_key(_counts_of(i)) for i in val_infos]), val_fps, num_val_pairs, rng)
    torch.set_num_threads(1)
    mlp, summary = train_scorer(train_feats, tr_pairs, val_feats, va_pairs, epochs=epochs, seed=seed, progress=progress)

    euclid = Scorer("euclidean")
    # the rankers compared: the baseline, the MLP with identical compositions first, the plain MLP (the original)
    variants = {"euclidean": euclid, "mlp": Scorer("mlp", mlp), "mlp_no_exact_first": Scorer("mlp", mlp, exact_first=False)}

    def pair_scores(scorer, feats, pairs):
        diff = np.abs(feats[pairs[0]] - feats[pairs[1]])
        return mlp.similarity(diff) if scorer.kind == "mlp" else -np.linalg.norm(diff, axis=-1)

    threshold = best_threshold(pair_scores(euclid, train_feats, tr_pairs), tr_pairs[2])
    pairs_cmp = {"mlp": pair_metrics(pair_scores(variants["mlp"], val_feats, va_pairs), va_pairs[2], 0.5),
                 "euclidean": pair_metrics(pair_scores(euclid, val_feats, va_pairs), va_pairs[2], threshold)}
    pick = rng.permutation(len(val_infos))[:rank_queries]
    ranking = ranking_quality(index, train_fps, [val_infos[i] for i in pick], val_feats[pick], val_fps[pick], variants)
    validation = {"pairs": pairs_cmp, "ranking": ranking}
    if match_queries > 0:
        from ..data.sources import parse_cif, read_crystals

        sub = pick[:match_queries]
        wanted = {val_infos[i].structure_id for i in sub}
        references = {raw.material_id: parse_cif(raw.cif) for f in val_files for raw in read_crystals(f)
                      if raw.material_id in wanted}
        validation["template_only_match"] = template_match_rates(
            index, [val_infos[i] for i in sub], val_feats[sub], references, variants)
    match = validation.get("template_only_match")
    key = {name: ((match[name]["top1_match_rate"], match[name]["best_of_5_match_rate"]) if match else ())
           + (ranking[name]["top1_hit_rate"], -(ranking[name]["mean_top1_distance"] or 0.0))
           for name in variants}
    chosen = max(variants, key=lambda name: key[name])  # ties: the first listed (the baseline)
    info = {
        "chosen_by": "validation template-only top-1 match rate, then best-of-5 match rate (StructureMatcher, "
                     f"{match_queries} validation rows), then the top-1 structure-fingerprint hit rate "
                     "(distance <= 0.3) and mean top-1 distance",
        "train_files": [Path(f).name for f in train_files], "val_files": [Path(f).name for f in val_files],
        "positive_cutoff": POSITIVE_CUTOFF,
        "pairs": "pairs of distinct crystals with the same count key, balanced positive/negative where possible",
        "training": {k: v for k, v in summary.items() if k != "history"},
        "validation": validation,
        "fit_time_s": round(time.perf_counter() - start, 1),
    }
    info["variant"] = chosen
    return Scorer(variants[chosen].kind, mlp, info, variants[chosen].exact_first)


__all__ = ["fit_scorer", "ranking_quality", "PairMLP"]
