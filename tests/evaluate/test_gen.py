"""Generation metrics (METHOD §7.3 + uniqueness/novelty/space groups) on cases with known answers."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from diffcsp_pp.cli.main import main
from diffcsp_pp.evaluate.gen import (
    coverage,
    detect_dataset,
    evaluate_gen,
    fit_standardizer,
    read_generated,
    standardize,
)
from tests.conftest import FIXTURES, SHARED_DATA, load_fixture_structures


def _perovskite(a=3.9):
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _rocksalt_conventional(a=6.29, cation="K", anion="Cl"):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_coverage_toy_case_by_hand():
    """Three generated and three reference crystals with 2-d structure and 1-d composition fingerprints.

    ref0 (0.1, 0): nearest generated structure 0.1 (gen0), composition 0 -> covered.
    ref1 (1, 0.15): nearest structure 0.15 (gen1), nearest composition 0 (gen0/gen2, not gen1!) -> covered,
        because the two minima are independent.
    ref2 (3, 3): nearest structure √8 -> not covered.              COV-R = 2/3.
    gen0: 0.1 / 0 -> ok; gen1: 0.15 / 10 -> no; gen2: √8 -> no.  COV-P = 1/3 (1/4 with 4 generated).
    """
    gs = [[0, 0], [1, 0], [5, 5]]
    gc = [[0], [10], [0]]
    rs = [[0.1, 0], [1, 0.15], [3, 3]]
    rc = [[0], [0], [0]]
    m = coverage(gs, gc, rs, rc, 0.2, 4.0)
    assert m["cov_recall"] == pytest.approx(2 / 3)
    assert m["cov_precision"] == pytest.approx(1 / 3)
    assert m["amsd_recall"] == pytest.approx((0.1 + 0.15 + math.sqrt(8)) / 3)
    assert m["amsd_precision"] == pytest.approx((0.1 + 0.15 + math.sqrt(8)) / 3)
    assert m["amcd_recall"] == 0.0 and m["amcd_precision"] == pytest.approx(10 / 3)
    assert coverage(gs, gc, rs, rc, 0.2, 4.0, num_generated=4)["cov_precision"] == pytest.approx(1 / 4)
    assert coverage(gs, gc, rs, rc, 0.2, 4.0, chunk=1) == m  # chunking does not change anything
    assert coverage(gs, gc, rs, rc, 3.0, 10.0)["cov_recall"] == 1.0
    with pytest.raises(ValueError):
        coverage(gs, gc, rs, rc, 0.2, 4.0, num_generated=2)


def test_standardizer_nan_and_constant_columns():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan]])
    mean, std = fit_standardizer(x)
    assert np.allclose(mean, [2, 5, 0]) and np.allclose(std, [1, 1, 1])
    z = standardize(np.array([[4.0, 5.0, np.nan]]), mean, std)
    assert np.allclose(z, [[2.0, 0.0, 0.0]])


def test_validity_uniqueness_novelty_and_requested_space_group():
    sto = _perovskite()
    kcl_conv = _rocksalt_conventional()
    kcl_prim = kcl_conv.get_primitive_structure()
    generated = [
        ("a", sto),
        ("b", sto.copy()),  # duplicate of a
        ("c", sto.make_supercell([2, 1, 1], in_place=False)),  # supercell of a: the same crystal
        ("d", Structure(Lattice.cubic(5.6), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])),  # NaCl2
        ("e", Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])),  # 0.3 Å apart
        ("f", kcl_conv),  # in the training set (as its primitive cell)
        ("g", "data_broken\n_cell_length_a 3\n"),  # unparsable CIF
    ]
    requested = {"a": 221, "b": 221, "c": 123}  # c keeps 221: the request is missed
    training = [kcl_prim, Structure(Lattice.cubic(4.0), ["Ba", "Ti", "O", "O", "O"], sto.frac_coords)]
    metrics, rows = evaluate_gen(generated, [sto, kcl_prim], training, dataset="perov_5", requested=requested,
                                 energy=False, property_model=None, progress=False)
    by = {r.name: r for r in rows}
    n = len(generated)
    assert [r.name for r in rows] == list("abcdefg")
    assert not by["d"].comp_valid and by["d"].struct_valid
    assert not by["e"].struct_valid and by["e"].comp_valid
    assert not by["g"].parsed and not by["g"].valid and not by["g"].unique and not by["g"].novel
    assert metrics["struct_valid"] == pytest.approx(5 / n) and metrics["comp_valid"] == pytest.approx(5 / n)
    assert metrics["valid"] == pytest.approx(4 / n)  # a, b, c, f
    assert [by[k].unique for k in "abcdef"] == [True, False, False, True, True, True]
    assert [by[k].novel for k in "abcdef"] == [True, True, True, True, True, False]
    assert metrics["uniqueness"] == pytest.approx(4 / n)
    assert metrics["novelty"] == pytest.approx(5 / n)
    assert metrics["unique_novel"] == pytest.approx(3 / n)  # a, d, e
    assert metrics["valid_unique_novel"] == pytest.approx(1 / n)  # a
    assert by["a"].space_group_strict == 221 and by["c"].space_group_strict == 221
    assert metrics["requested_space_group_rate"] == pytest.approx(2 / 3)
    assert metrics["counts"]["requested_space_group"] == 3
    # property sample: every valid crystal (4 < 1000); COV-P over all 7 generated
    assert metrics["property_sample_size"] == 4 and sum(r.in_property_sample for r in rows) == 4
    assert metrics["counts"]["generated_in_coverage"] == 6  # all but the unparsable one
    assert metrics["cov_recall"] == 1.0  # both references appear among the generated
    assert metrics["cov_precision"] <= metrics["counts"]["generated_in_coverage"] / n
    assert metrics["wdist_energy"] is None and metrics["energy_model"]["wdist_energy"] is None
    assert metrics["stable_chgnet_hull"] is None and metrics["counts"]["hull_evaluated"] is None


def test_identical_sets_zero_distances_full_coverage():
    structures = [s for _, s in load_fixture_structures("perov_5_test.csv.gz")[:5]]
    training = [s for _, s in load_fixture_structures("perov_5_test.csv.gz")[:12]]
    generated = [(f"s{i}", s) for i, s in enumerate(structures)]
    metrics, _ = evaluate_gen(generated, structures, training, dataset="perov_5", energy=False, progress=False,
                              sample_size=1000, seed=3)
    assert metrics["wdist_density"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["wdist_num_elements"] == 0.0
    assert metrics["cov_recall"] == 1.0 and metrics["cov_precision"] == 1.0
    assert metrics["amsd_recall"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["novelty"] == 0.0 and metrics["uniqueness"] == 1.0
    assert metrics["space_group_js_distance_reference"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["requested_space_group_rate"] is None
    if metrics["energy_model"]["wdist_prop"] is not None:  # the paper's property model (weights present)
        assert metrics["wdist_prop"] == pytest.approx(0.0, abs=1e-9)
        assert "perovskite" in metrics["energy_model"]["wdist_prop"] and "heat_ref" in metrics["energy_model"]["wdist_prop"]
    else:
        assert metrics["notes"] and "property model" in metrics["notes"][0]
    # the sample is seeded: a smaller sample is reproducible
    m1, r1 = evaluate_gen(generated, structures, training, dataset="perov_5", energy=False, progress=False,
                          sample_size=2, seed=3, property_model=None)
    _, r2 = evaluate_gen(generated, structures, training, dataset="perov_5", energy=False, progress=False,
                          sample_size=2, seed=3, property_model=None)
    assert m1["property_sample_size"] == 2
    assert [r.in_property_sample for r in r1] == [r.in_property_sample for r in r2]


def test_unknown_dataset_needs_cutoffs():
    s = _perovskite()
    with pytest.raises(ValueError, match="dataset"):
        evaluate_gen([("a", s)], [s], [s], energy=False, progress=False)


@pytest.mark.skipif(not (SHARED_DATA / "perov_5" / "test.csv.gz").is_file(), reason="benchmark data not present")
def test_dataset_recognised_by_checksum():
    assert detect_dataset(SHARED_DATA / "perov_5" / "test.csv.gz") == "perov_5"
    assert detect_dataset(FIXTURES / "perov_5_test.csv.gz") is None


def test_dataset_recognised_from_a_split_summary(tmp_path):
    """A file a split script derived (data/mp20/select.csv.gz) is recognised by the checksum its
    split.json records, and only by that: a changed file or a summary without it is not."""
    import json
    import shutil

    from diffcsp_pp.data.registry import sha256_uncompressed

    csv = tmp_path / "select.csv.gz"
    shutil.copy(FIXTURES / "perov_5_test.csv.gz", csv)
    assert detect_dataset(csv) is None  # no summary beside it
    summary = {"dataset": "mp_20", "sha256": {"select.csv.gz": sha256_uncompressed(csv)}}
    (tmp_path / "split.json").write_text(json.dumps(summary))
    assert detect_dataset(csv) == "mp_20"
    other = tmp_path / "other.csv.gz"
    shutil.copy(csv, other)
    assert detect_dataset(other) is None  # not listed under its name
    summary["sha256"]["select.csv.gz"] = "0" * 64
    (tmp_path / "split.json").write_text(json.dumps(summary))
    assert detect_dataset(csv) is None  # content differs from what the split wrote
    (tmp_path / "split.json").write_text("{not json")
    assert detect_dataset(csv) is None


def _generate_folder(tmp_path, structures):
    """A `generate`-style output folder written by the project's own PredictionWriter."""
    from diffcsp_pp.sample.writer import PredictionWriter
    from diffcsp_pp.symmetry.analyze import detect_space_group

    out = tmp_path / "gen"
    writer = PredictionWriter(out, {"test": True})
    items = []
    for i, s in enumerate(structures):
        sg = detect_space_group(s, 1e-3) if i < 6 else 1  # the last ones ask for P1 and are not P1
        items.append((f"g{i}", s, {"space_group": sg}))
    writer.add(items)
    return out


def test_read_generated_from_manifest(tmp_path):
    structures = [s for _, s in load_fixture_structures("perov_5_test.csv.gz")[:8]]
    folder = _generate_folder(tmp_path, structures)
    items, requested = read_generated(folder)
    assert [n for n, _ in items] == [f"g{i}" for i in range(8)]
    assert requested["g7"] == 1 and len(requested) == 8
    items2, req2 = read_generated(folder / "cifs")  # a bare CIF folder: no manifest, no requests
    assert req2 is None and sorted(n for n, _ in items2) == sorted(n for n, _ in items)


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(tmp_path / "cache"))
    rows = pd.read_csv(FIXTURES / "perov_5_test.csv.gz")
    ref, train = tmp_path / "ref.csv", tmp_path / "train.csv"
    rows.iloc[8:16].to_csv(ref, index=False)
    rows.iloc[:30].to_csv(train, index=False)
    structures = [s for _, s in load_fixture_structures("perov_5_test.csv.gz")[:8]]
    folder = _generate_folder(tmp_path, structures)
    out = tmp_path / "res" / "metrics.json"
    rc = main(["evaluate", "gen", "--pred", str(folder), "--ref", str(ref), "--train", str(train), "--out", str(out),
               "--no-energy", "--dataset", "perov_5", "--quiet", "--sample-size", "5"])
    assert rc == 0
    text = capsys.readouterr().out
    m = json.loads(out.read_text())
    assert m["counts"]["generated"] == 8 and m["valid"] == 1.0
    assert m["requested_space_group_rate"] == pytest.approx(6 / 8)
    assert m["property_sample_size"] == 5 and m["wdist_energy"] is None
    assert m["novelty"] == 0.0  # the generated crystals are training rows
    assert m["inputs"]["dataset_from"] == "--dataset"
    assert m["comp_valid_icsd24"] is not None and m["distinct_templates"] >= 1
    assert m["novel_template_rate"] == 0.0  # training rows: their templates are in training
    assert "d_E" in text and "Wyckoff templates" in text
    table = pd.read_csv(out.with_suffix(".rows.csv"))
    assert len(table) == 8 and table["in_property_sample"].sum() == 5
    for name in ("spacegroups", "density"):
        assert (tmp_path / "res" / f"metrics.{name}.png").is_file() and f"metrics.{name}.png" in text
    assert not (tmp_path / "res" / "metrics.energy.png").exists()
    assert len(list((tmp_path / "cache" / "evaluate").glob("*.npz"))) == 2  # reference + training, cached


@pytest.mark.parametrize("case", ["missing_pred", "bad_csv", "no_dataset", "empty_folder", "no_property_model"])
def test_cli_errors_are_one_line(tmp_path, capsys, case):
    s = _perovskite()
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["x"], "cif": [str(CifWriter(s))]}).to_csv(ref, index=False)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "x.cif").write_text(str(CifWriter(s)))
    args = ["evaluate", "gen", "--pred", str(pred), "--ref", str(ref), "--train", str(ref),
            "--out", str(tmp_path / "m.json"), "--no-energy", "--quiet", "--no-cache"]
    if case == "missing_pred":
        args[3] = str(tmp_path / "nope")
        expected = "no such file"
    elif case == "bad_csv":
        bad = tmp_path / "bad.csv.gz"
        bad.write_bytes(b"not gzip at all")
        args[5] = str(bad)
        expected = "cannot read"
    elif case == "no_dataset":
        expected = "--dataset"
    elif case == "no_property_model":
        args += ["--dataset", "perov_5", "--property-model", str(tmp_path / "nope")]
        expected = "property model"
    else:
        (pred / "x.cif").unlink()
        args += ["--dataset", "perov_5"]
        expected = "no .cif files"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")
def test_chgnet_energy_of_identical_sets_and_training_hull():
    """Real CHGNet predictions: identical generated and reference sets give a CHGNet W1 of 0; a
    generated copy of a training crystal on the training hull has e_above_hull 0 (stable, not novel:
    no S.U.N.); a system without elemental training crystals gets no hull; an isolated-atom crystal
    CHGNet refuses gets NaN instead of failing the run."""
    from diffcsp_pp.evaluate.gen import chgnet_energies

    sto, kcl = _perovskite(), _rocksalt_conventional().get_primitive_structure()
    potassium = Structure(Lattice.cubic(5.2), ["K", "K"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    chlorine = Structure(Lattice.cubic(4.0), ["Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    training = [sto, kcl, potassium, chlorine]
    metrics, rows = evaluate_gen([("a", sto), ("b", kcl)], [sto, kcl], training, dataset="perov_5", energy=True,
                                 property_model=None, progress=False)
    energies = [r.energy_per_atom for r in rows]
    assert all(e is not None and -12 < e < 0 for e in energies)
    assert metrics["wdist_energy"] == pytest.approx(0.0, abs=1e-6)
    assert "CHGNet" in metrics["energy_model"]["wdist_energy"]
    assert "total energy per atom" in metrics["energy_model"]["wdist_energy"]
    assert "training set's CHGNet energies" in metrics["energy_model"]["e_above_hull"]
    assert metrics["wdist_prop"] is None and metrics["energy_model"]["wdist_prop"] is None
    assert "energy_per_atom" in metrics["histograms"]
    assert rows[0].e_above_hull is None  # Sr-Ti-O: no elemental training crystals
    assert rows[1].e_above_hull == pytest.approx(0.0, abs=1e-6)  # KCl is on the K-Cl training hull
    assert metrics["counts"]["hull_no_reference"] == 1 and metrics["counts"]["stable"] == 1
    assert metrics["stable_chgnet_hull"] == pytest.approx(0.5) and metrics["sun_chgnet_hull"] == 0.0
    far = Structure(Lattice.cubic(30), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    e = chgnet_energies([sto, far], progress=False)
    assert np.isfinite(e[0]) and np.isnan(e[1]) and e[0] == pytest.approx(energies[0], abs=1e-5)
