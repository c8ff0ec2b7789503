"""CSP metrics: match rate and RMSE against reference structures (METHOD §7.1).

Protocol of the paper: ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` with pymatgen's other
defaults (``primitive_cell=True``, ``scale=True``); a pair counts as matched only if both the
prediction and the reference are valid (composition, structure, fingerprint; see
:mod:`~diffcsp_pp.evaluate.validity`) and ``get_rms_dist`` returns a value. The denominator is every
reference row, so a reference that fails the gate can never be matched. RMSE is the mean
normalised RMS displacement over matched rows. With several predictions per row the best (lowest
RMS) counts. The same figures without the validity gate are reported beside them.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import warnings
from dataclasses import asdict, dataclass

import numpy as np

MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


@dataclass
class RowResult:
    """Evaluation of one reference row."""

    row: int
    material_id: str
    num_predictions: int
    gt_valid: bool
    best_rms: float | None  # best RMS over predictions, ungated
    best_rms_gated: float | None  # best RMS over valid predictions, if the reference is valid
    valid_predictions: int


def _validity(structure, fingerprint: bool) -> bool:
    from .validity import fingerprint_valid, structure_composition_valid, structure_valid

    try:
        ok = structure_valid(structure) and structure_composition_valid(structure)
        return bool(ok and (not fingerprint or fingerprint_valid(structure)))
    except Exception:  # noqa: BLE001 - a structure that breaks a check is invalid
        return False


def evaluate_row(args) -> RowResult:
    """Match every prediction of one row against its reference."""
    row, material_id, gt, preds, fingerprint = args
    from pymatgen.analysis.structure_matcher import StructureMatcher

    warnings.simplefilter("ignore")
    matcher = StructureMatcher(**MATCHER_SETTINGS)
    gt_valid = _validity(gt, fingerprint)
    best = best_gated = None
    n_valid = 0
    for pred in preds:
        try:
            rms = matcher.get_rms_dist(pred, gt)
        except Exception:  # noqa: BLE001 - an unmatchable prediction is a miss
            rms = None
        rms = None if rms is None else float(rms[0])
        valid = _validity(pred, fingerprint)
        n_valid += valid
        if rms is not None:
            best = rms if best is None else min(best, rms)
            if valid and gt_valid:
                best_gated = rms if best_gated is None else min(best_gated, rms)
    return RowResult(row, material_id, len(preds), gt_valid, best, best_gated, n_valid)


def evaluate_csp(references, predictions, workers: int = 1, fingerprint: bool = True, progress: bool = True):
    """Metrics over reference rows.

    Args:
        references: list of (material_id, Structure), one per reference row.
        predictions: dict material_id -> list of predicted Structures (missing ids count as misses).
        workers: processes.
        fingerprint: include the CrystalNN fingerprint in the validity gate (as the paper does).

    Returns:
        (metrics dict, list[RowResult]).
    """
    from tqdm import tqdm

    jobs = [(i, mid, gt, predictions.get(mid, []), fingerprint) for i, (mid, gt) in enumerate(references)]
    if not jobs:
        raise ValueError("no reference rows to evaluate")
    bar = tqdm(total=len(jobs), desc="evaluate csp", unit="row", disable=not progress, file=sys.stderr)
    results: list[RowResult] = []
    if workers <= 1:
        for job in jobs:
            results.append(evaluate_row(job))
            bar.update()
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for res in pool.imap(evaluate_row, jobs, chunksize=8):
                results.append(res)
                bar.update()
    bar.close()
    n = len(results)
    gated = [r.best_rms_gated for r in results if r.best_rms_gated is not None]
    ungated = [r.best_rms for r in results if r.best_rms is not None]
    predicted = [r for r in results if r.num_predictions > 0]
    metrics = {
        "match_rate": len(gated) / n,
        "rmse": float(np.mean(gated)) if gated else None,
        "match_rate_ungated": len(ungated) / n,
        "rmse_ungated": float(np.mean(ungated)) if ungated else None,
        # the same gated match rate over the rows that have predictions (e.g. a --limit run)
        "match_rate_over_predicted_rows": (
            sum(r.best_rms_gated is not None for r in predicted) / len(predicted) if predicted else None
        ),
        "counts": {
            "rows": n,
            "rows_with_predictions": sum(r.num_predictions > 0 for r in results),
            "predictions": sum(r.num_predictions for r in results),
            "valid_predictions": sum(r.valid_predictions for r in results),
            "valid_references": sum(r.gt_valid for r in results),
            "matched": len(gated),
            "matched_ungated": len(ungated),
        },
        "protocol": {
            "structure_matcher": {**MATCHER_SETTINGS, "primitive_cell": True, "scale": True},
            "validity_gate": ["smact_composition", "min_distance_0.5A", "volume_0.1A3"]
            + (["crystalnn_fingerprint"] if fingerprint else []),
            "best_of_n": True,
            "rmse": "mean over matched rows of get_rms_dist()[0], normalised by (V/N)^(1/3)",
        },
    }
    return metrics, results


def write_rows_csv(path, results) -> None:
    """One CSV row per reference row (the fields of :class:`RowResult`)."""
    import csv

    table = [asdict(r) for r in results]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
