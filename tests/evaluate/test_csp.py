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
    assert rows[0].rms[0] is None and rows[0].rms[1] is not None and rows[0].valid == (True, True)
    top1_alone, _ = evaluate_csp(refs, {m: p[:1] for m, p in preds.items()}, fingerprint=False, progress=False)
    top1 = csp_metrics(rows, fingerprint=False, first=1)
    for key in ("match_rate", "rmse", "match_rate_ungated", "counts"):
        assert top1[key] == top1_alone[key]
    assert top1["match_rate"] == pytest.approx(1 / 3)  # only b's first prediction matches
    assert csp_metrics(rows, fingerprint=False)["match_rate"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="first"):
        csp_metrics(rows, first=0)


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
