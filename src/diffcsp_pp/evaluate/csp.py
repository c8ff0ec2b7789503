"""CSP metrics: match rate and RMSE against reference structures (METHOD §7.1).

Protocol of the paper: ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` with pymatgen's other
defaults (``primitive_cell=True``, ``scale=True``); a pair counts as matched only if both the
prediction and the reference are valid (composition, structure, fingerprint; see
:mod:`~diffcsp_pp.evaluate.validity`) and ``get_rms_dist`` returns a value. The denominator is every
reference row, so a reference that fails the gate can never be matched. RMSE is the mean
normalised RMS displacement over matched rows. With several predictions per row the best (lowest
RMS) counts. The same figures without the validity gate are reported beside them.

A prediction's validity can only change a metric when it matched a valid reference, so by default
only those predictions are judged (``judge_all=False``; the CrystalNN fingerprint is most of the
cost, and most of a ranked list does not match): every metric is the same as judging all, and the
counts say ``valid_matched_predictions`` instead of ``valid_predictions``.

Long evaluations resume: :func:`evaluate_csp` takes rows already judged (``done``) and hands each
new one to ``on_row``; ``diffcsp-pp evaluate csp`` keeps them, keyed by the row's CIF texts and
settings (:func:`row_key`), in a file beside its output until the metrics are written
(:func:`read_partial`). The references' validity verdicts are cached across evaluations
(:class:`ReferenceValidityCache`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


@dataclass
class RowResult:
    """Evaluation of one reference row. ``rms`` and ``valid`` hold one entry per prediction, in the
    order given (RMS None = no match; validity None = not judged, see the module docstring), so
    metrics over the first k predictions need no re-matching (:func:`csp_metrics` with ``first=k``)."""

    row: int
    material_id: str
    num_predictions: int
    gt_valid: bool
    best_rms: float | None  # best RMS over predictions, ungated
    best_rms_gated: float | None  # best RMS over valid predictions, if the reference is valid
    valid_predictions: int  # predictions judged valid (of those judged)
    rms: tuple = ()
    valid: tuple = ()
    unreadable: tuple = ()  # positions of predictions given as CIF text that pymatgen cannot read (misses)

    def first(self, k: int) -> RowResult:
        """The same row judged on its first k predictions only."""
        rms, valid = self.rms[:k], self.valid[:k]
        matched = [r for r in rms if r is not None]
        gated = [r for r, v in zip(rms, valid) if r is not None and v and self.gt_valid]
        return RowResult(self.row, self.material_id, len(rms), self.gt_valid, min(matched, default=None),
                         min(gated, default=None), sum(v is True for v in valid), rms, valid,
                         tuple(i for i in self.unreadable if i < k))


def _validity(structure, fingerprint: bool) -> bool:
    from .validity import fingerprint_valid, structure_composition_valid, structure_valid

    try:
        ok = structure_valid(structure) and structure_composition_valid(structure)
        return bool(ok and (not fingerprint or fingerprint_valid(structure)))
    except Exception:  # noqa: BLE001 - a structure that breaks a check is invalid
        return False


def evaluate_row(args) -> RowResult:
    """Match every prediction of one row against its reference; judge the validity of all of them
    (``judge_all``) or of those that matched a valid reference. ``known_gt_valid``: the reference's
    verdict when it is already known (None: judge it). A prediction given as CIF text is read here
    (in the worker); one pymatgen cannot read is a miss, listed in ``unreadable``."""
    row, material_id, gt, preds, fingerprint, judge_all, known_gt_valid = args
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from ..data.sources import parse_cif

    warnings.simplefilter("ignore")
    matcher = StructureMatcher(**MATCHER_SETTINGS)
    gt_valid = _validity(gt, fingerprint) if known_gt_valid is None else bool(known_gt_valid)
    all_rms, all_valid, unreadable = [], [], []
    for i, pred in enumerate(preds):
        if isinstance(pred, str):
            try:
                pred = parse_cif(pred)
            except Exception:  # noqa: BLE001 - e.g. two atoms on one site: a miss for its row
                unreadable.append(i)
                all_rms.append(None)
                all_valid.append(False if judge_all else None)
                continue
        try:
            rms = matcher.get_rms_dist(pred, gt)
        except Exception:  # noqa: BLE001 - an unmatchable prediction is a miss
            rms = None
        all_rms.append(None if rms is None else float(rms[0]))
        all_valid.append(_validity(pred, fingerprint) if judge_all or (rms is not None and gt_valid) else None)
    judged = RowResult(row, material_id, 0, gt_valid, None, None, 0, tuple(all_rms), tuple(all_valid), tuple(unreadable))
    return judged.first(len(all_rms))


def evaluate_csp(references, predictions, workers: int = 1, fingerprint: bool = True, progress: bool = True,
                 judge_all: bool = False, done: Mapping[int, RowResult] | None = None,
                 on_row: Callable[[RowResult], None] | None = None,
                 reference_validity: Sequence[bool | None] | None = None):
    """Metrics over reference rows.

    Args:
        references: list of (material_id, Structure), one per reference row.
        predictions: dict material_id -> list of predicted Structures or their CIF texts (read in the
            workers; missing ids count as misses).
        workers: processes.
        fingerprint: include the CrystalNN fingerprint in the validity gate (as the paper does).
        judge_all: judge every prediction's validity, not only the matched ones' (same metrics;
            the counts then include ``valid_predictions``).
        done: row index -> RowResult of rows judged before (not judged again).
        on_row: called with each newly judged row, in row order, as soon as it is judged.
        reference_validity: per reference row, its known validity verdict (None: judge it).

    Returns:
        (metrics dict, list[RowResult]).
    """
    from ..parallel import ProcessPool

    if not references:
        raise ValueError("no reference rows to evaluate")
    done = dict(done or {})
    known = list(reference_validity) if reference_validity is not None else [None] * len(references)
    if len(known) != len(references):
        raise ValueError(f"reference_validity has {len(known)} entries for {len(references)} references")
    jobs = [(i, mid, gt, predictions.get(mid, []), fingerprint, judge_all, known[i])
            for i, (mid, gt) in enumerate(references) if i not in done]
    with ProcessPool(workers, progress, unit="row") as pool:
        for result in pool.map(evaluate_row, jobs, "evaluate csp", chunksize=8):
            done[result.row] = result
            if on_row is not None:
                on_row(result)
    results = [done[i] for i in range(len(references))]
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
    judged_all = all(v is not None for r in results for v in r.valid)
    valid_key = "valid_predictions" if judged_all else "valid_matched_predictions"
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
            valid_key: sum(r.valid_predictions for r in results),
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
        t["valid"] = ";".join("" if v is None else str(int(v)) for v in t["valid"])
        t["unreadable"] = ";".join(str(i) for i in t["unreadable"])
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


# ------------------------------------------------------------------------------ resuming, caching
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def row_key(reference_cif: str, prediction_cifs: Sequence[str], fingerprint: bool, judge_all: bool) -> str:
    """What a row's result depends on: its reference and prediction CIF texts (in order) and the
    gate settings; a kept result is reused only under the same key."""
    blob = json.dumps({"ref": _sha(reference_cif), "preds": [_sha(t) for t in prediction_cifs],
                       "fingerprint": bool(fingerprint), "judge_all": bool(judge_all)}, sort_keys=True)
    return _sha(blob)


def row_json(result: RowResult, key: str) -> str:
    """One line of the partial-results file."""
    return json.dumps({"key": key, **asdict(result)})


def read_partial(path, keys: Sequence[str], counts: Sequence[int] | None = None) -> dict[int, RowResult]:
    """Rows of a partial-results file whose key is still ``keys[row]`` (a changed prediction or
    reference is judged again) and, with ``counts``, that judged ``counts[row]`` predictions;
    unreadable or truncated lines (an interrupted write) are ignored."""
    out: dict[int, RowResult] = {}
    path = Path(path)
    if not path.is_file():
        return out
    fields = set(RowResult.__dataclass_fields__)
    for line in path.read_text(errors="replace").splitlines():
        try:
            d = json.loads(line)
            row = int(d["row"])
            d.setdefault("unreadable", [])  # lines written before the field existed
            if not (0 <= row < len(keys)) or d.get("key") != keys[row] or set(d) - {"key"} != fields:
                continue
            if counts is not None and d["num_predictions"] != counts[row]:
                continue  # e.g. written when an unreadable prediction was left out of its row
            d.pop("key")
            d["rms"], d["valid"], d["unreadable"] = tuple(d["rms"]), tuple(d["valid"]), tuple(d["unreadable"])
            out[row] = RowResult(**d)
        except (ValueError, KeyError, TypeError):
            continue
    return out


class ReferenceValidityCache:
    """Validity verdicts of reference structures by the sha256 of their CIF text, kept in one JSON
    file per gate setting and library versions (``<cache>/validity/<key>.json``): a reference
    file evaluated again (the next snapshot, the next split of predictions) skips a third of the
    work. ``cache_dir`` None: nothing is kept."""

    VERSION = 1  # bump when the gate changes

    def __init__(self, cache_dir, fingerprint: bool):
        self.path = None
        self.known: dict[str, bool] = {}
        if cache_dir is None:
            return
        from importlib import metadata

        def version(name: str) -> str:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return "?"

        setting = json.dumps({"fingerprint": bool(fingerprint), "gate": self.VERSION,
                              **{name: version(name) for name in ("pymatgen", "smact", "matminer")}}, sort_keys=True)
        self.path = Path(cache_dir) / "validity" / f"{_sha(setting)[:32]}.json"
        try:
            data = json.loads(self.path.read_text())
            self.known = {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.known = {}

    def get(self, cif: str) -> bool | None:
        return self.known.get(_sha(cif))

    def update(self, verdicts: Mapping[str, bool]) -> None:
        """Add ``cif text -> verdict`` and write the file (atomically; a failure to write is ignored)."""
        if self.path is None:
            return
        new = {_sha(c): bool(v) for c, v in verdicts.items()}
        if all(self.known.get(k) == v for k, v in new.items()):
            return
        self.known.update(new)
        from ..atomic import write_atomic

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self.known))
        except OSError:
            pass
