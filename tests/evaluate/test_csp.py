"""CSP metrics on cases with known answers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from diffcsp_pp.evaluate.csp import csp_metrics, evaluate_csp
from diffcsp_pp.evaluate.validity import composition_valid, structure_valid
from tests.conftest import FIXTURES


def _perovskite(a=3.9, shift=0.0):
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5 + shift], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@pytest.mark.parametrize(
    "elements, counts, expected",
    [
        (["Na", "Cl"], [1, 1], True), (["Na", "Cl"], [1, 2], False), (["Sr", "Ti", "O"], [1, 1, 3], True),
        (["Cu", "Zn"], [1, 1], True),  # all metals: an alloy
        (["C"], [8], True), (["Cl", "O"], [2, 7], True), (["Na", "F"], [1, 2], False),
        (["Sr", "Ti", "O"], [2, 2, 6], True),  # gcd reduction
        (["Fe", "O"], [3, 4], False),  # mixed valence is not representable with one state per element
    ],
)
def test_composition_validity_known_cases(elements, counts, expected):
    assert composition_valid(elements, counts) is expected


def test_structure_validity():
    assert structure_valid(_perovskite())
    close = Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 Å apart
    assert not structure_valid(close)
    assert structure_valid(Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.11, 0, 0]]))


def test_perturbed_copy_has_known_rmse():
    """Moving one of N atoms by δ: after the best translation the RMS displacement is δ√(N-1)/N,
    normalised by (V/N)^(1/3)."""
    gt = _perovskite()
    delta = 0.1  # Å, along z on Ti
    pred = _perovskite(shift=delta / 3.9)
    metrics, rows = evaluate_csp([("p", gt)], {"p": [pred]}, fingerprint=False, progress=False)
    n, v = 5, 3.9**3
    expected = delta * math.sqrt(n - 1) / n / (v / n) ** (1 / 3)
    assert metrics["match_rate"] == 1.0
    assert metrics["rmse"] == pytest.approx(expected, rel=1e-3)


def test_gating_missing_rows_and_best_of_n():
    gt_ok, gt_bad = _perovskite(), Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    far = _perovskite(a=6.5, shift=0.2)  # a different crystal
    refs = [("a", gt_ok), ("b", gt_bad), ("c", gt_ok)]
    preds = {"a": [far, _perovskite(shift=0.01)], "b": [gt_bad.copy()]}  # "c" has no prediction
    metrics, rows = evaluate_csp(refs, preds, fingerprint=True, progress=False)
    assert metrics["counts"]["rows"] == 3 and metrics["counts"]["matched"] == 1
    assert metrics["match_rate"] == pytest.approx(1 / 3)  # b's reference fails SMACT: never matched
    assert metrics["match_rate_ungated"] == pytest.approx(2 / 3)
    assert rows[0].best_rms_gated is not None and rows[0].num_predictions == 2
    assert rows[1].gt_valid is False and rows[1].best_rms is not None and rows[1].best_rms_gated is None
    assert rows[2].num_predictions == 0 and rows[2].best_rms is None


def test_first_k_predictions_equal_a_separate_evaluation():
    """Top-1 figures taken from a best-of-n evaluation (``csp_metrics(first=1)``) are those of
    evaluating the first prediction alone."""
    gt = _perovskite()
    far = _perovskite()
    far.lattice = Lattice.tetragonal(3.9, 6.5)  # c/a = 1.67: beyond ltol even after volume scaling
    refs = [("a", gt), ("b", gt), ("c", gt)]
    preds = {"a": [far, _perovskite(shift=0.01)], "b": [_perovskite(shift=0.02), far], "c": [far]}
    _, rows = evaluate_csp(refs, preds, fingerprint=False, progress=False)
    assert rows[0].rms[0] is None and rows[0].rms[1] is not None and rows[0].valid == (None, True)  # unmatched: not judged
    top1_alone, _ = evaluate_csp(refs, {m: p[:1] for m, p in preds.items()}, fingerprint=False, progress=False)
    top1 = csp_metrics(rows, fingerprint=False, first=1)
    for key in ("match_rate", "rmse", "match_rate_ungated", "counts"):
        assert top1[key] == top1_alone[key]
    assert top1["match_rate"] == pytest.approx(1 / 3)  # only b's first prediction matches
    assert csp_metrics(rows, fingerprint=False)["match_rate"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="first"):
        csp_metrics(rows, first=0)


def test_judging_only_matched_predictions_changes_no_metric():
    """Validity is judged only where it can change a metric (a prediction that matched a valid
    reference): every metric, top-k included, equals judging every prediction; only the count's name
    and meaning differ."""
    gt_ok, gt_bad = _perovskite(), Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    far = _perovskite()
    far.lattice = Lattice.tetragonal(3.9, 6.5)
    close = _perovskite(shift=-0.38)  # matches (normalised RMS 0.26), but Ti 0.47 Å from an O: invalid
    refs = [("a", gt_ok), ("b", gt_bad), ("c", gt_ok), ("d", gt_ok)]
    preds = {"a": [far, _perovskite(shift=0.01), far], "b": [gt_bad.copy(), far], "c": [far], "d": [close, far]}
    lazy, lazy_rows = evaluate_csp(refs, preds, fingerprint=True, progress=False)
    full, full_rows = evaluate_csp(refs, preds, fingerprint=True, progress=False, judge_all=True)
    for first in (None, 1, 2, 3):
        a, b = csp_metrics(lazy_rows, first=first), csp_metrics(full_rows, first=first)
        for key in ("match_rate", "rmse", "match_rate_ungated", "rmse_ungated", "match_rate_over_predicted_rows"):
            assert a[key] == b[key], (first, key)
        assert {k: v for k, v in a["counts"].items() if "valid_" not in k or "references" in k} == \
            {k: v for k, v in b["counts"].items() if "valid_" not in k or "references" in k}
    assert full["counts"]["valid_predictions"] == 6  # far x 4 and the two valid copies; not close
    assert lazy["counts"]["valid_matched_predictions"] == 1 and "valid_predictions" not in lazy["counts"]
    assert lazy_rows[3].valid == (False, None) and lazy_rows[1].valid == (None, None)  # b's reference fails SMACT
    assert lazy["match_rate"] == pytest.approx(1 / 4)


def test_lower_symmetry_copy_is_matched_as_documented():
    """Matching compares structures, not space groups: a slightly distorted (P4mm) copy of a cubic
    perovskite matches; the space-group check is a separate metric."""
    metrics, _ = evaluate_csp([("p", _perovskite())], {"p": [_perovskite(shift=0.02)]}, fingerprint=False, progress=False)
    assert metrics["match_rate"] == 1.0


def test_evaluate_cli(tmp_path):
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    ref = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["x", "y"], "cif": [str(CifWriter(_perovskite())), str(CifWriter(_perovskite(4.1)))]}).to_csv(ref, index=False)
    preds = tmp_path / "pred"
    preds.mkdir()
    (preds / "x__0.cif").write_text(str(CifWriter(_perovskite(shift=0.01))))
    # a real prediction of an undertrained MP-20 model (Amm2, Sn and Ru 0.001 Å apart): pymatgen cannot
    # read it back; it must count as a miss for row y, be reported, and not stop the evaluation
    (preds / "y__0.cif").write_text((FIXTURES / "overlapping_sites_prediction.cif").read_text())
    out = tmp_path / "m" / "metrics.json"
    res = subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", "evaluate", "csp", "--pred", str(preds),
                          "--ref", str(ref), "--out", str(out), "--quiet", "--no-fingerprint"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    assert m["match_rate"] == 0.5 and m["counts"]["rows"] == 2
    assert m["unreadable_predictions"] == ["y__0.cif"] and "1 prediction(s) could not be read" in res.stdout
    assert out.with_suffix(".rows.csv").read_text().count("\n") == 3
    bad = subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", "evaluate", "csp", "--pred", str(tmp_path / "nope"),
                          "--ref", str(ref), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
    assert np.isfinite(m["rmse"])


def test_evaluate_cli_resumes_an_interrupted_run_and_caches_reference_validity(tmp_path, monkeypatch, capsys):
    """Ctrl-C in `evaluate csp` keeps the judged rows beside --out; the rerun judges only the rest (and a
    row whose prediction changed) and writes the metrics of an uninterrupted run. A second evaluation
    against the same references takes their validity from the cache instead of judging them again."""
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    from diffcsp_pp.cli.main import main
    from diffcsp_pp.evaluate import csp as csp_module

    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(tmp_path / "cache"))
    ids = [f"m{i}" for i in range(6)]
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ids, "cif": [str(CifWriter(_perovskite(3.8 + 0.05 * i))) for i in range(6)]}).to_csv(ref, index=False)
    preds = tmp_path / "pred"
    preds.mkdir()
    for i, mid in enumerate(ids):
        (preds / f"{mid}__0.cif").write_text(str(CifWriter(_perovskite(3.8 + 0.05 * i, shift=0.01 * (i % 3)))))
    judged, validity_calls = [], []
    real_row, real_validity = csp_module.evaluate_row, csp_module._validity

    def counting_row(args, stop_at=None):
        if stop_at is not None and len(judged) == stop_at:
            raise KeyboardInterrupt
        judged.append(args[1])
        return real_row(args)

    def counting_validity(structure, fingerprint):
        validity_calls.append(1)
        return real_validity(structure, fingerprint)

    argv = ["evaluate", "csp", "--pred", str(preds), "--ref", str(ref), "--no-fingerprint", "--quiet"]
    monkeypatch.setattr(csp_module, "_validity", counting_validity)
    monkeypatch.setattr(csp_module, "evaluate_row", lambda args: counting_row(args, stop_at=4))
    out = tmp_path / "m" / "metrics.json"
    assert main([*argv, "--out", str(out)]) != 0  # interrupted after 4 rows
    partial = out.with_name("metrics.json.partial.jsonl")
    assert len(partial.read_text().splitlines()) == 4 and not out.exists()
    (preds / "m1__0.cif").write_text(str(CifWriter(_perovskite(3.85, shift=0.02))))  # row 1 changes: judged again
    judged.clear()
    monkeypatch.setattr(csp_module, "evaluate_row", counting_row)
    assert main([*argv, "--out", str(out)]) == 0
    assert judged == ["m1", "m4", "m5"] and not partial.exists()
    resumed = json.loads(out.read_text())
    assert resumed["rows_reused"] == 3

    fresh = tmp_path / "fresh" / "metrics.json"
    judged.clear()
    validity_calls.clear()
    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(tmp_path / "cache2"))  # no cached verdicts
    assert main([*argv, "--out", str(fresh)]) == 0
    cold = len(validity_calls)
    again = tmp_path / "again" / "metrics.json"
    validity_calls.clear()
    assert main([*argv, "--out", str(again)]) == 0  # same references: their verdicts come from the cache
    assert cold - len(validity_calls) == 6
    expected = json.loads(fresh.read_text())
    for m in (resumed, json.loads(again.read_text())):
        for key in ("match_rate", "rmse", "match_rate_ungated", "counts"):
            assert m[key] == expected[key], key
    assert expected["counts"]["matched"] == 6
