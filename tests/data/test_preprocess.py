"""Preprocessing: cache keyed on content+settings+versions, failure report, parallel = serial, store."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from diffcsp_pp.data import PreprocessConfig, load_records, preprocess, read_crystals
from diffcsp_pp.data.sources import content_hash
from diffcsp_pp.errors import DataError
from tests.conftest import FIXTURES


@pytest.fixture
def broken_csv(tmp_path):
    """The perov_5 fixture with two broken rows added (a bad CIF and a disordered crystal)."""
    frame = pd.read_csv(FIXTURES / "perov_5_test.csv.gz").head(12)
    good_cif = frame["cif"].iloc[0]
    bad = frame.iloc[:2].copy()
    bad["material_id"] = ["broken-cif", "disordered"]
    bad.loc[bad.index[0], "cif"] = "data_x\n_cell_length_a 3\n"
    from pymatgen.io.cif import CifWriter

    from diffcsp_pp.data.sources import parse_cif

    structure = parse_cif(good_cif)
    structure.replace(0, {structure.species[0].symbol: 0.5, "Cs": 0.5})
    bad.loc[bad.index[1], "cif"] = str(CifWriter(structure))
    path = tmp_path / "mixed.csv"
    pd.concat([frame, bad]).to_csv(path, index=False)
    return path


def test_preprocess_writes_records_report_and_reuses_cache(broken_csv, tmp_path):
    out = tmp_path / "out"
    res = preprocess(broken_csv, out, PreprocessConfig(symprec=0.01), workers=1, progress=False)
    assert (res.rows, res.succeeded, res.failed, res.cached) == (14, 12, 2, False)
    report = json.loads(res.report.read_text())
    failed = {f["material_id"]: f["reason"] for f in report["failures"]}
    assert failed["broken-cif"] == "cif_parse_error"
    assert failed["disordered"] == "disordered"
    assert report["settings"]["symprec"] == 0.01 and "spglib" in report["versions"]
    infos = load_records(res.output)
    assert len(infos) == 12 and all(i.symprec == 0.01 for i in infos)
    again = preprocess(broken_csv, out, PreprocessConfig(symprec=0.01), progress=False)
    assert again.cached and again.output == res.output
    other = preprocess(broken_csv, out, PreprocessConfig(symprec=0.1), progress=False)
    assert not other.cached and other.output != res.output and other.key != res.key


def test_records_round_trip_through_store(tmp_path):
    from diffcsp_pp import analyze
    from tests.conftest import load_fixture_structures

    res = preprocess(FIXTURES / "mpts_52_val.csv.gz", tmp_path, progress=False)
    loaded = load_records(res.output)
    direct = [analyze(s, 0.1, structure_id=mid) for mid, s in load_fixture_structures("mpts_52_val.csv.gz")]
    assert len(loaded) == len(direct)
    for a, b in zip(loaded, direct, strict=True):
        assert a.structure_id == b.structure_id and a.space_group == b.space_group
        assert a.wyckoff_letters == b.wyckoff_letters and a.species == b.species
        np.testing.assert_array_equal(a.atom_types, b.atom_types)
        np.testing.assert_array_equal(a.anchor_idx, b.anchor_idx)
        np.testing.assert_array_equal(a.wyckoff_ops, b.wyckoff_ops)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.k, b.k)


def test_parallel_equals_serial(tmp_path):
    serial = preprocess(FIXTURES / "carbon_24_val.csv.gz", tmp_path / "a", workers=1, progress=False)
    parallel = preprocess(FIXTURES / "carbon_24_val.csv.gz", tmp_path / "b", workers=2, progress=False)
    assert serial.key == parallel.key
    for x, y in zip(load_records(serial.output), load_records(parallel.output), strict=True):
        assert x.structure_id == y.structure_id
        np.testing.assert_array_equal(x.frac_coords, y.frac_coords)


def test_content_hash_ignores_compression_and_cif_folder(tmp_path):
    plain = tmp_path / "x.csv"
    with gzip.open(FIXTURES / "perov_5_test.csv.gz") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert content_hash(plain) == content_hash(FIXTURES / "perov_5_test.csv.gz")
    folder = tmp_path / "cifs"
    folder.mkdir()
    for raw in read_crystals(plain)[:5]:
        (folder / f"{raw.material_id}.cif").write_text(raw.cif)
    res = preprocess(folder, tmp_path / "out", PreprocessConfig(symprec=0.01), progress=False)
    assert res.succeeded == 5
    h = content_hash(folder)
    (folder / "extra.cif").write_text(read_crystals(plain)[6].cif)
    assert content_hash(folder) != h


def test_registry_symprec_is_used_for_recognised_files(tmp_path):
    from diffcsp_pp.data.registry import DATASETS, find_by_checksum

    entry = DATASETS["perov_5/test"]
    assert entry.symprec == 0.01 and find_by_checksum(entry.sha256) is entry
    # a fixture is not an official file: the generic default applies
    res = preprocess(FIXTURES / "mpts_52_val.csv.gz", tmp_path, progress=False)
    assert res.symprec == 0.1


@pytest.mark.parametrize(
    "content, match",
    [("a,b\n1,2\n", "no 'cif' column"), ("\x00\x01\x02", "CSV|cif")],
)
def test_bad_inputs(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        preprocess(path, tmp_path / "out", progress=False)


def test_missing_input_and_bad_settings(tmp_path):
    with pytest.raises(FileNotFoundError):
        preprocess(tmp_path / "nope.csv", tmp_path)
    with pytest.raises(ValueError, match="symprec"):
        preprocess(FIXTURES / "perov_5_test.csv.gz", tmp_path, PreprocessConfig(symprec=-1))
    with pytest.raises(ValueError, match="workers"):
        preprocess(FIXTURES / "perov_5_test.csv.gz", tmp_path, workers=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .cif"):
        preprocess(empty, tmp_path)
