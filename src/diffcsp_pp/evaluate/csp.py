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

import warnings
from dataclasses import asdict, dataclass

import numpy as np

MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


@dataclass
class RowResult:
    """Evaluation of one reference row. ``rms`` and ``valid`` hold one entry per prediction, in the
    order given (RMS None = no match), so metrics over the first k predictions need no re-matching
    (:func:`csp_metrics` with ``first=k``)."""

    row: int
    material_id: str
    num_predictions: int
    gt_valid: bool
    best_rms: float | None  # best RMS over predictions, ungated
    best_rms_gated: float | None  # best RMS over valid predictions, if the reference is valid
    valid_predictions: int
    rms: tuple = ()
    valid: tuple = ()

    def first(self, k: int) -> RowResult:
        """The same row judged on its first k predictions only."""
        rms, valid = self.rms[:k], self.valid[:k]
        matched = [r for r in rms if r is not None]
        gated = [r for r, v in zip(rms, valid) if r is not None and v and self.gt_valid]
        return RowResult(self.row, self.material_id, len(rms), self.gt_valid, min(matched, default=None),
                         min(gated, default=None), sum(valid), rms, valid)


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
    all_rms, all_valid = [], []
    for pred in preds:
        try:
            rms = matcher.get_rms_dist(pred, gt)
        except Exception:  # noqa: BLE001 - an unmatchable prediction is a miss
            rms = None
        all_rms.append(None if rms is None else float(rms[0]))
        all_valid.append(_validity(pred, fingerprint))
    judged = RowResult(row, material_id, 0, gt_valid, None, None, 0, tuple(all_rms), tuple(all_valid))
    return judged.first(len(all_rms))


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
    from ..parallel import ProcessPool

    jobs = [(i, mid, gt, predictions.get(mid, []), fingerprint) for i, (mid, gt) in enumerate(references)]
    if not jobs:
        raise ValueError("no reference rows to evaluate")
    with ProcessPool(workers, progress, unit="row") as pool:
        results: list[RowResult] = list(pool.map(evaluate_row, jobs, "evaluate csp", chunksize=8))
    metrics = csp_metrics(results, fingerprint=fingerprint)
    return metrics, results


def csp_metrics(results: list[RowResult], fingerprint: bool = True, first: int | None = None) -> dict:
    """Match rate, RMSE (gated and ungated) and counts over evaluated rows; with ``first=k`` only each
    row's first k predictions count (top-1 of a ranked list, best-of-k of a longer one)."""
    if first is not None:
        if first < 1:
            raise ValueError(f"first must be >= 1, got {first}")
        results = [r.first(first) for r in results]
    n = len(results)
    gated = [r.best_rms_gated for r in results if r.best_rms_gated is not None]
    ungated = [r.best_rms for r in results if r.best_rms is not None]
    predicted = [r for r in results if r.num_predictions > 0]
    return {
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
            "rows_with_predictions": len(predicted),
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
            "best_of_n": True if first is None else f"first {first}",
            "rmse": "mean over matched rows of get_rms_dist()[0], normalised by (V/N)^(1/3)",
        },
    }


def write_rows_csv(path, results) -> None:
    """One CSV row per reference row (the fields of :class:`RowResult`)."""
    import csv

    table = [asdict(r) for r in results]
    for t in table:  # per-prediction fields as "a;b;c" ("" = no match)
        t["rms"] = ";".join("" if x is None else f"{x:.6g}" for x in t["rms"])
        t["valid"] = ";".join(str(int(v)) for v in t["valid"])
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
