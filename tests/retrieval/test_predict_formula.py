"""predict(formula) without a space group: retrieval + refinement, provenance, fallback, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pymatgen.core import Composition

from diffcsp_pp import DiffCSPPP
from diffcsp_pp.data.outputs import records
from diffcsp_pp.retrieval.fallback import enumerated_templates
from diffcsp_pp.symmetry import detect_space_group
from tests.conftest import tiny_run_dir
from tests.test_api import _load

STATS = {"221:1a,1b,3c": 10, "25:1a,1b,1c,1d,1d": 30, "221:Sr:1a,Ti:1b,O:3c": 2}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_index):
    path = tiny_run_dir(tmp_path_factory.mktemp("run") / "run", stats=STATS)
    tiny_index.save(path)
    return path


def test_predict_from_formula_keeps_template_symmetry(run_dir):
    m = DiffCSPPP.load(run_dir)
    out = m.predict("PtInN3", n=3, seed=0, steps=4)
    assert len(out) == 3
    assert [s.properties["rank"] for s in out] == [1, 2, 3]
    for s in out:
        p = s.properties
        assert p["source"] == "template" and p["template"] and isinstance(p["substitution"], dict)
        assert s.composition.reduced_composition == Composition("PtInN3")
        assert p["space_group"] == p["template_space_group"] == detect_space_group(s, 1e-3) == p["detected_space_group"]
        assert sorted(w.split(":")[1] for w in p["wyckoff"].split()) == sorted(w.split(":")[1] for w in p["template_wyckoff"].split())
        assert p["diff_ratio"] == 0.1 and p["seed"] == 0 and p["formula_units"] == 1
    assert out[0].properties["score"] >= out[1].properties["score"] >= out[2].properties["score"]
    again = m.predict("PtInN3", n=3, seed=0, steps=4)
    assert [s.frac_coords.tolist() for s in out] == [s.frac_coords.tolist() for s in again]
    # formula-unit multiple: KBr on the rock-salt template (4 formula units), substitution Na->K, Cl->Br
    kbr = m.predict("KBr", seed=1, steps=3)[0]
    assert len(kbr) == 8 and kbr.properties["formula_units"] == 4 and kbr.properties["template"] == "rocksalt-NaCl"
    assert kbr.properties["substitution"] == {"Na": "K", "Cl": "Br"} and detect_space_group(kbr, 1e-3) == 225


def test_template_only_and_the_card_default(run_dir, fixture_infos, tmp_path):
    import shutil

    import numpy as np

    m = DiffCSPPP.load(run_dir)
    refined = m.predict("PtInN3", n=3, seed=0, steps=4)
    plain = m.predict("PtInN3", n=3, seed=5, diff_ratio=0)
    # the same ranked templates, not refined: the template crystal itself with its elements renamed
    assert [s.properties["template"] for s in plain] == [s.properties["template"] for s in refined]
    originals = {info.structure_id: info.to_structure() for info in fixture_infos}
    for s in plain:
        p = s.properties
        assert p["diff_ratio"] == 0 and p["source"] == "template" and p["attempts"] == 1
        assert p["space_group"] == p["template_space_group"] == detect_space_group(s, 1e-3)
        assert s.composition.reduced_composition == Composition("PtInN3")
        ref = originals[p["template"]]
        np.testing.assert_allclose(s.lattice.matrix, ref.lattice.matrix, atol=1e-9)
        np.testing.assert_allclose(s.frac_coords, ref.frac_coords, atol=1e-9)
        assert [p["substitution"][x.specie.symbol] for x in ref] == [x.specie.symbol for x in s]
    # more than the candidates: each distinct template once (refinement would cycle with new noise)
    every = m.predict("PtInN3", n=50, diff_ratio=0)
    names = [s.properties["template"] for s in every]
    assert 3 <= len(every) < 50 and len(set(names)) == len(names)
    # the default comes from the model config's sampler section (the card is documentation)
    configured = tmp_path / "configured"
    shutil.copytree(run_dir, configured)
    raw = json.loads((configured / "config.json").read_text())
    raw["sampler"]["formula_diff_ratio"] = 0.0
    (configured / "config.json").write_text(json.dumps(raw))
    (configured / "card.json").write_text(json.dumps({"formula_diff_ratio": 0.5}))
    assert DiffCSPPP.load(configured).predict_from_formula("PtInN3")[0].properties["diff_ratio"] == 0
    assert m.formula_diff_ratio == 0.1 and DiffCSPPP.load(configured).formula_diff_ratio == 0.0
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match="diff_ratio must be 0"):
            m.predict("PtInN3", diff_ratio=bad)


def test_fallback_enumerates_training_patterns(run_dir):
    m = _load(run_dir)  # full sampling: an untrained network cannot denoise k from pure noise (see test_api)
    # Ca2O3 (2, 3) has no candidate; the training pattern 221:1a,1b,3c holds it (Ca on 1a + 1b)
    s = m.predict("Ca2O3", n=2, seed=0, steps=3)
    assert [x.properties["source"] for x in s] == ["enumerated"] * 2
    assert s[0].properties["rule"] == "training_pattern" and s[0].properties["space_group"] == 25  # more frequent
    assert {x.properties["detected_space_group"] for x in s} <= {25, 221} and s[1].properties["space_group"] == 221
    # NaCl2 (1, 2): no training pattern fits 3 atoms, so the training space groups are enumerated
    t = m.predict("NaCl2", seed=0, steps=3)[0]
    assert t.properties["rule"] == "space_group_enumeration" and t.properties["space_group"] in (25, 221)
    assert t.properties["space_group"] == detect_space_group(t, 1e-3) and t.composition.reduced_composition == Composition("NaCl2")
    with pytest.raises(ValueError, match="no Wyckoff pattern or space group"):
        m.predict("Na9Cl", steps=2)  # 10 atoms: larger than every training template (at most 8)


def test_enumerated_templates_rule():
    got = enumerated_templates({"Ca": 2, "O": 3}, STATS, limit=5, max_atoms=20)
    assert [(e.space_group, e.rule) for e in got] == [(25, "training_pattern"), (221, "training_pattern")]
    assert sorted(lab for el, lab in got[1].sites if el == "Ca") == ["1a", "1b"]
    assert enumerated_templates({"Na": 1}, {}, limit=3) == []


def test_predict_formula_errors(tmp_path, run_dir):
    bare = DiffCSPPP.load(tiny_run_dir(tmp_path / "bare"))
    with pytest.raises(FileNotFoundError, match="template_index.npz.*build_template_index.py"):
        bare.predict("SrTiO3")
    m = DiffCSPPP.load(run_dir)
    with pytest.raises(ValueError, match="needs a space group"):
        m.predict("SrTiO3", wyckoff="Sr:1a Ti:1b O:3c")
    with pytest.raises(ValueError, match="unknown element"):
        m.predict("Xx3")
    with pytest.raises(ValueError, match="diff_ratio"):
        m.predict("SrTiO3", diff_ratio=1.5)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_cli_predict_formula_alone(run_dir, tmp_path):
    out = tmp_path / "out"
    res = _cli("predict", "--formula", "PtInN3", "--top-k", "2", "--model", run_dir, "--steps", "3", "--out", out,
               "--quiet")
    assert res.returncode == 0, res.stderr
    entries = records(out)
    assert [e["name"] for e in entries] == ["PtInN3_rank1", "PtInN3_rank2"]
    for e in entries:
        assert e["source"] == "template" and e["template"] and e["substitution"] and e["rank"] in (1, 2)
        assert e["detected_space_group"] == e["space_group"] == e["template_space_group"]
        assert (out / e["file"]).is_file()
    bad = _cli("predict", "--formula", "Xx3", "--model", run_dir, "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "unknown element" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    plain = _cli("predict", "--formula", "PtInN3", "--top-k", "2", "--diff-ratio", "0", "--model", run_dir,
                 "--out", tmp_path / "plain", "--quiet")
    assert plain.returncode == 0, plain.stderr
    entries = records(tmp_path / "plain")
    assert [e["diff_ratio"] for e in entries] == [0.0, 0.0]
    for args in (("--diff-ratio", "1.5"), ("--diff-ratio", "0", "--space-group", "221")):
        bad = _cli("predict", "--formula", "PtInN3", *args, "--model", run_dir, "--out", tmp_path / "bad2")
        assert bad.returncode == 2 and "diff" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_share_dead_ends_are_not_retried():
    """Sharing 16 interchangeable 1a orbits among Sr2FeCuSO3 x2 works; with one orbit too few it must
    fail fast (the search once permuted equal orbits for minutes before giving up)."""
    import time

    from diffcsp_pp.retrieval.fallback import _share

    target = {"Sr": 4, "Fe": 2, "Cu": 2, "S": 2, "O": 6}
    sites = _share(["1a"] * 16, [1] * 16, target)
    assert sites is not None and sorted(el for el, _ in sites) == sorted(el for el, n in target.items() for _ in range(n))
    start = time.perf_counter()
    assert _share(["4a"] + ["1a"] * 20, [4] + [1] * 20, {"Sr": 3, "Fe": 3, "Cu": 3, "S": 3, "O": 12}) is not None
    assert _share(["4a"] + ["1a"] * 20, [4] + [1] * 20, {"Sr": 3, "Fe": 3, "Cu": 3, "S": 3, "O": 13}) is None
    assert time.perf_counter() - start < 5.0


def test_wyckoff_assignments_infeasible_last_element_is_fast():
    """An element that fits nowhere ends the search once per state, not once per placement of the
    elements before it."""
    import time

    from diffcsp_pp.symmetry.enumerate import wyckoff_assignments

    start = time.perf_counter()
    # Pm-3m: multiplicities 1, 1, 3, 3, 6, ...; 5 atoms of O cannot be formed without reusing 1a/1b
    assert wyckoff_assignments(221, {"Sr": 1, "Ti": 1, "Ba": 3, "Ca": 3, "O": 2}) == []
    assert time.perf_counter() - start < 5.0


def test_several_formulas_in_one_pass_keep_each_formulas_templates(run_dir):
    """predict_from_formula with a list: one list per formula, the same ranked templates as one call
    per formula (template only: the very same structures; refined: one sampler pass)."""
    m = DiffCSPPP.load(run_dir)
    formulas = ["PtInN3", "KBr", "SrTiO3"]
    together = m.predict_from_formula(formulas, top_k=2, diff_ratio=0, seed=0)
    for formula, got in zip(formulas, together, strict=True):
        alone = m.predict_from_formula(formula, top_k=2, diff_ratio=0, seed=0)
        assert [s.properties["template"] for s in got] == [s.properties["template"] for s in alone]
        for a, b in zip(got, alone, strict=True):  # the very same crystals
            assert a.lattice.matrix.tolist() == b.lattice.matrix.tolist() and a.frac_coords.tolist() == b.frac_coords.tolist()
            assert [str(x) for x in a.species] == [str(x) for x in b.species] and a.properties == b.properties
    refined = m.predict_from_formula(formulas, top_k=2, seed=3, sampler=_cheap())
    for formula, got in zip(formulas, refined, strict=True):
        plain = m.predict_from_formula(formula, top_k=2, diff_ratio=0)  # the distinct candidates, cycled when refining
        assert [s.properties["template"] for s in got] == [plain[i % len(plain)].properties["template"] for i in range(2)]
        assert [s.properties["rank"] for s in got] == [plain[i % len(plain)].properties["rank"] for i in range(2)]
        assert all(s.composition.reduced_composition == Composition(formula).reduced_composition for s in got)
        assert all(s.properties["detected_space_group"] == s.properties["space_group"] for s in got)


def _cheap():
    from diffcsp_pp.sample.config import SamplerConfig

    return SamplerConfig(steps=3)


def test_cli_predict_csv_from_formula(run_dir, tmp_path):
    """--csv --from-formula: each row's reduced composition, its top-k templates as <id>_rank<k>, the same
    templates as --formula gives; rows that cannot be predicted are reported, the rerun redoes nothing."""
    import pandas as pd

    from tests.conftest import FIXTURES, load_fixture_structures

    csv = FIXTURES / "perov_5_test.csv.gz"
    out = tmp_path / "ff"
    res = _cli("predict", "--csv", csv, "--from-formula", "--limit", "5", "--top-k", "2", "--diff-ratio", "0",
               "--batch-size", "2", "--model", run_dir, "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    entries = records(out)
    refs = dict(load_fixture_structures("perov_5_test.csv.gz")[:5])
    assert {e["material_id"] for e in entries} == set(refs)
    for e in entries:
        assert e["name"] == f"{e['material_id']}_rank{e['rank']}"
        assert Composition(e["query_formula"]) == refs[e["material_id"]].composition.reduced_composition
    first = entries[0]
    alone = _cli("predict", "--formula", first["query_formula"], "--top-k", "2", "--diff-ratio", "0", "--model",
                 run_dir, "--out", tmp_path / "alone", "--quiet")
    assert alone.returncode == 0, alone.stderr
    assert [e["template"] for e in records(tmp_path / "alone")] == \
        [e["template"] for e in entries if e["material_id"] == first["material_id"]]
    again = _cli("predict", "--csv", csv, "--from-formula", "--limit", "5", "--top-k", "2", "--diff-ratio", "0",
                 "--batch-size", "2", "--model", run_dir, "--out", out, "--quiet")
    assert again.returncode == 0 and [e["file"] for e in records(out)] == [e["file"] for e in entries]

    # a CSV of formulas: a bad formula and one with no template or fallback are skipped and reported
    formulas = tmp_path / "formulas.csv"
    pd.DataFrame({"material_id": ["a", "b", "c", "d"], "formula": ["KBr", "Xx2O", "Na9Cl", "PtInN3"]}).to_csv(formulas, index=False)
    res = _cli("predict", "--csv", formulas, "--top-k", "1", "--model", run_dir, "--steps", "3", "--out",
               tmp_path / "list", "--quiet")
    assert res.returncode == 0, res.stderr
    assert [e["name"] for e in records(tmp_path / "list")] == ["a_rank1", "d_rank1"]
    skipped = [json.loads(line) for line in (tmp_path / "list" / "skipped.jsonl").read_text().splitlines()]
    assert [(s["material_id"], s["reason"]) for s in skipped] == [("b", "bad_formula"), ("c", "no_template")]
    assert "2 row(s)" in res.stdout and "skipped.jsonl" in res.stdout
    for args, message in ((("--csv", formulas, "--space-group", "221"), "--space-group does not apply"),
                          (("--formula", "KBr", "--space-group", "225", "--from-formula"), "--from-formula applies"),
                          (("--csv", csv, "--top-k", "2"), "--top-k applies")):
        bad = _cli("predict", *args, "--model", run_dir, "--out", tmp_path / "bad")
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_ranked_predictions_reports_top_k(run_dir, tmp_path):
    """evaluate csp on ranked lists: best-of-all as the headline, top-1 from each row's rank-1 prediction —
    the same figures as evaluating a folder that holds only the rank-1 predictions."""
    import shutil

    from tests.conftest import FIXTURES

    csv = FIXTURES / "perov_5_test.csv.gz"
    out = tmp_path / "ff"
    res = _cli("predict", "--csv", csv, "--from-formula", "--limit", "8", "--top-k", "3", "--diff-ratio", "0",
               "--model", run_dir, "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    top1 = tmp_path / "top1"
    shutil.copytree(out, top1)
    for e in records(top1):
        if e["rank"] > 1:
            (top1 / e["file"]).unlink()
    metrics = {}
    for name, folder in (("all", out), ("top1", top1)):
        res = _cli("evaluate", "csp", "--pred", folder, "--ref", csv, "--no-fingerprint", "--out",
                   tmp_path / f"{name}.json", "--quiet")
        assert res.returncode == 0, res.stderr
        metrics[name] = json.loads((tmp_path / f"{name}.json").read_text())
    first = metrics["all"]["first_k"]
    assert set(first) == {"1", "2", "3"}
    assert first["3"]["match_rate"] == metrics["all"]["match_rate"]
    assert first["1"]["match_rate"] == metrics["top1"]["match_rate"]
    assert first["1"]["rmse"] == metrics["top1"]["rmse"]
    assert first["1"]["match_rate"] <= first["2"]["match_rate"] <= first["3"]["match_rate"]
    assert "first_k" not in metrics["top1"]
