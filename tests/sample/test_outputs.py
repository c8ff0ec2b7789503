"""The output folder: the writer (append-only records, bucketed CIFs, extxyz per shard, a small
manifest, lock, crash repair, safe names) and the one reader (new and old layout, CIF folders)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from ase.io import read as ase_read

from diffcsp_pp.data import outputs
from diffcsp_pp.evaluate.gen import read_generated
from diffcsp_pp.names import safe_output_name
from diffcsp_pp.relax import read_structures
from diffcsp_pp.sample import writer as writer_module
from diffcsp_pp.sample.writer import PredictionWriter, symmetric_cif, unique_names
from diffcsp_pp.symmetry.analyze import detect_space_group
from tests.conftest import load_fixture_structures

INPUTS = {"test": 1}


@pytest.fixture(scope="module")
def crystals():
    """Real Perov-5 crystals with their spglib groups."""
    return [(m, s, detect_space_group(s, 1e-3)) for m, s in load_fixture_structures("perov_5_test.csv.gz")[:7]]


def _items(crystals, names=None):
    names = names or [m for m, _, _ in crystals]
    return [(n, s, {"space_group": sg, "seed": 0}) for n, (_, s, sg) in zip(names, crystals, strict=True)]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_layout_buckets_records_extxyz_and_a_small_manifest(tmp_path, crystals, monkeypatch):
    monkeypatch.setattr(outputs, "CIFS_PER_FOLDER", 3)
    out = tmp_path / "out"
    with PredictionWriter(out, INPUTS, shard="r00000", manifest_every=1e9) as w:
        w.add(_items(crystals[:4]))
        running = json.loads((out / "manifest.json").read_text())
        assert running["count"] == 0 and running["complete"] is False  # not rewritten per batch
        w.add(_items(crystals[4:]))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == 2 and manifest["complete"] is True and manifest["count"] == 7
    assert "entries" not in manifest and manifest["requested_space_group_rate"] == 1.0
    buckets = sorted(p.name for p in (out / "cifs" / "r00000").iterdir())
    assert buckets == ["00000", "00001", "00002"]  # at most 3 per folder
    assert all(len(list((out / "cifs" / "r00000" / b).iterdir())) <= 3 for b in buckets)
    found = outputs.records(out)
    assert [r["name"] for r in found] == [m for m, _, _ in crystals]
    xyz = out / "extxyz" / "r00000.extxyz"
    assert len(ase_read(xyz, index=":", format="extxyz")) == 7
    data = xyz.read_bytes()
    for r, (_, s, sg) in zip(found, crystals, strict=True):
        assert (out / r["file"]).read_text() == symmetric_cif(s)[0]
        start, end = r["frame"]
        (frame,) = ase_read(io.StringIO(data[start:end].decode()), index=":", format="extxyz")
        assert str(frame.info["name"]) == r["name"] and len(frame) == len(s) and r["detected_space_group"] == sg
        # the shortest interatomic distance, independently: every site against every periodic image
        import itertools

        import numpy as np

        shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ s.lattice.matrix
        cart = s.cart_coords
        d = np.linalg.norm(cart[:, None, None, :] - cart[None, :, None, :] - shifts[None, None], axis=-1)
        d[np.arange(len(s)), np.arange(len(s)), :] = np.inf  # two distinct sites, not a site and its own image
        assert r["min_distance"] == pytest.approx(d.min(), abs=1e-4) if len(s) > 1 else r["min_distance"] is None
    # the summary readers see
    assert outputs.summary(out)["count"] == 7


def test_manifest_is_refreshed_while_running_at_most_every_n_seconds(tmp_path, crystals):
    out = tmp_path / "out"
    w = PredictionWriter(out, INPUTS, shard="r00000", manifest_every=0)
    w.add(_items(crystals[:2]))
    assert json.loads((out / "manifest.json").read_text())["count"] == 2
    w.close(complete=False)
    assert json.loads((out / "manifest.json").read_text())["complete"] is False


def test_rerun_skips_done_and_a_lost_cif_is_written_again(tmp_path, crystals):
    out = tmp_path / "out"
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[:3]))
    first = outputs.records(out)
    (out / first[1]["file"]).unlink()
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        assert w.done() == {first[0]["name"], first[2]["name"]}
        w.add(_items(crystals[1:2]))
    again = outputs.records(out)
    assert sorted(r["name"] for r in again) == sorted(r["name"] for r in first)
    assert len(ase_read(out / "extxyz" / "r00000.extxyz", index=":", format="extxyz")) == 4  # one per record
    with pytest.raises(ValueError, match="other arguments"):
        PredictionWriter(out, {"test": 2})


def test_the_manifest_records_the_weights_and_refuses_outputs_of_other_weights(tmp_path, crystals):
    """A bundled model keeps its name when it is rebundled: a folder resumed with other weights would
    mix two models' outputs, so the weights' SHA-256 is recorded and checked."""
    import hashlib

    from diffcsp_pp.folder import ModelFolder

    folder = ModelFolder.resolve("perov5-csp")
    ident = folder.identity()
    assert ident["sha256"] == hashlib.sha256(folder.file(folder.WEIGHTS).read_bytes()).hexdigest()
    assert ident["global_step"] == json.loads(folder.file(folder.CARD).read_text())["training"]["global_step"]
    out = tmp_path / "out"
    with PredictionWriter(out, INPUTS, shard="r00000", weights=ident) as w:
        w.add(_items(crystals[:2]))
    assert json.loads((out / "manifest.json").read_text())["weights"] == ident
    with PredictionWriter(out, INPUTS, shard="r00000", weights=dict(ident)) as w:  # the same weights resume
        assert len(w.done()) == 2
    other = {"sha256": "0" * 64, "global_step": 7}
    with pytest.raises(ValueError, match=r"other model weights \(step \d+, sha256 [0-9a-f]{12}\) than these \(step 7"):
        PredictionWriter(out, INPUTS, shard="r00000", weights=other)
    # a folder written before weights were recorded resumes, and does not claim weights it cannot know
    old = tmp_path / "old"
    with PredictionWriter(old, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[:1]))
    with PredictionWriter(old, INPUTS, shard="r00000", weights=other) as w:
        w.add(_items(crystals[1:2]))
    assert "weights" not in json.loads((old / "manifest.json").read_text())


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, crystals):
    out = tmp_path / "out"
    first = PredictionWriter(out, INPUTS, shard="r00000")
    with pytest.raises(ValueError, match="another run is writing"):
        PredictionWriter(out, INPUTS, shard="r00000")._open()
    other = PredictionWriter(out, INPUTS, shard="r00001")  # another rank's shard: fine
    other.add(_items(crystals[:1]))
    other.close()
    first.close()
    PredictionWriter(out, INPUTS, shard="r00000").close()  # released


def test_a_failing_batch_leaves_no_cif_tmp_or_frame(tmp_path, crystals, monkeypatch):
    out = tmp_path / "out"
    w = PredictionWriter(out, INPUTS, shard="r00000")
    w.add(_items(crystals[:1]))
    before = _files(out)
    xyz_size = (out / "extxyz" / "r00000.extxyz").stat().st_size
    real, calls = writer_module.symmetric_cif, []

    def failing(structure):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(structure)

    monkeypatch.setattr(writer_module, "symmetric_cif", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        w.add(_items(crystals[1:5]))
    monkeypatch.undo()
    assert _files(out) == before
    assert (out / "extxyz" / "r00000.extxyz").stat().st_size == xyz_size
    w.add(_items(crystals[1:5]))  # the same writer goes on
    w.close()
    assert len(outputs.records(out)) == 5
    assert len(ase_read(out / "extxyz" / "r00000.extxyz", index=":", format="extxyz")) == 5


def test_what_a_killed_writer_left_is_repaired_on_resume(tmp_path, crystals):
    out = tmp_path / "out"
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[:2]))
    # a kill in the middle of the next batch: a CIF and a temporary file without records, extxyz
    # frames without records, half a record line
    bucket = out / "cifs" / "r00000" / "00000"
    (bucket / "orphan.cif").write_text(symmetric_cif(crystals[2][1])[0])
    (bucket / ".orphan.cif.abc.tmp").write_text("partial")
    xyz = out / "extxyz" / "r00000.extxyz"
    size = xyz.stat().st_size
    with xyz.open("ab") as fh:
        fh.write(b"5\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nSr 0 0 0\n")
    with (out / "records" / "r00000.jsonl").open("ab") as fh:
        fh.write(b'{"name": "orphan", "file": "cifs/r0')
    assert [r["name"] for r in outputs.records(out)] == [m for m, _, _ in crystals[:2]]  # torn line ignored
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[2:4]))
    assert not (bucket / "orphan.cif").exists() and not list(bucket.glob("*.tmp"))
    frames = ase_read(xyz, index=":", format="extxyz")
    assert [str(f.info["name"]) for f in frames] == [m for m, _, _ in crystals[:4]]  # no duplicated or torn frame
    assert xyz.stat().st_size > size
    assert [r["name"] for r in outputs.records(out)] == [m for m, _, _ in crystals[:4]]


def test_names_are_safe_unique_and_stay_inside_out(tmp_path, crystals):
    names, renamed = unique_names(["mp-1", "mp-1", "../../evil", "a/b", "a_b", "", ".hidden"])
    assert len(set(names)) == 7 and names[:2] == ["mp-1", "mp-1_2"]
    assert all("/" not in n and not n.startswith(".") and n for n in names)
    # "a/b" becomes a hash-suffixed name (names.safe_output_name), so it does not collide with "a_b"
    assert ("mp-1", "mp-1_2") in renamed and len(renamed) == 5
    assert all(safe_output_name(n) == n for n in names)  # idempotent
    out = tmp_path / "deep" / "out"
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[:7], names))
        with pytest.raises(ValueError, match="given twice"):
            w.add(_items(crystals[:1], ["mp-1"]))
    assert {p.name for p in (tmp_path / "deep").iterdir()} == {"out"}  # nothing beside --out
    root = out.resolve()
    assert all(p.resolve().is_relative_to(root) for p in out.rglob("*"))
    assert len(outputs.records(out)) == 7
    # a record that points outside the folder is refused by the reader
    with (out / "records" / "r00000.jsonl").open("a") as fh:
        fh.write(json.dumps({"name": "x", "file": "../../etc/passwd"}) + "\n")
    with pytest.raises(ValueError, match="outside"):
        outputs.records(out)


def _old_layout(folder: Path, crystals) -> None:
    """An output folder as written before issue #21 (one manifest listing every entry)."""
    (folder / "cifs").mkdir(parents=True)
    entries = []
    for m, s, sg in crystals:
        text, detected = symmetric_cif(s)
        (folder / "cifs" / f"{m}.cif").write_text(text)
        entries.append({"name": m, "file": f"cifs/{m}.cif", "space_group": sg, "seed": 0,
                        "detected_space_group": detected, "formula": s.composition.reduced_formula})
    (folder / "manifest.json").write_text(json.dumps({"package": "diffcsp-pp", "version": "0.1.0", "inputs": INPUTS,
                                                      "count": len(entries), "requested_space_group_rate": 1.0,
                                                      "entries": entries}))


def test_every_reader_reads_the_old_and_the_new_layout(tmp_path, crystals):
    old, new = tmp_path / "old", tmp_path / "new"
    _old_layout(old, crystals[:4])
    with PredictionWriter(new, INPUTS, shard="r00000") as w:
        w.add(_items(crystals[:4]))
    names = [m for m, _, _ in crystals[:4]]
    for folder in (old, new):
        assert [r["name"] for r in outputs.records(folder)] == names
        assert outputs.done_names(folder) == set(names)
        assert outputs.summary(folder)["count"] == 4
        items, requested = read_generated(folder)
        assert [n for n, _ in items] == names and requested == {m: sg for m, _, sg in crystals[:4]}
        relaxed_inputs = read_structures([folder])
        assert [n for n, _ in relaxed_inputs] == names
        assert [s.properties["space_group"] for _, s in relaxed_inputs] == [sg for _, _, sg in crystals[:4]]
        assert "frame" not in relaxed_inputs[0][1].properties
        # a bare CIF folder (no manifest): every CIF, named by its stem
        items, requested = read_generated(folder / "cifs")
        assert requested is None and sorted(n for n, _ in items) == sorted(names)
    with pytest.raises(ValueError, match="older version"):
        PredictionWriter(old, INPUTS)


def test_evaluate_csp_reads_an_output_folder_by_material_id(tmp_path, crystals):
    from diffcsp_pp.cli.main import _read_predictions

    out = tmp_path / "out"
    ids = [m for m, _, _ in crystals[:3]]
    names, _ = unique_names([ids[0], ids[0], ids[1] + "/x"])
    with PredictionWriter(out, INPUTS, shard="r00000") as w:
        w.add((n, s, {"material_id": mid, "space_group": sg}) for n, mid, (_, s, sg)
              in zip(names, [ids[0], ids[0], ids[1] + "/x"], crystals[:3], strict=True))
    preds, unreadable = _read_predictions(out)
    assert unreadable == [] and sorted(preds) == sorted([ids[0], ids[1] + "/x"]) and len(preds[ids[0]]) == 2


def test_predict_csv_with_repeated_and_unsafe_ids(tmp_path, capsys):
    import pandas as pd

    from diffcsp_pp.cli.main import main
    from tests.conftest import FIXTURES
    from tests.test_api import _run

    rows = pd.read_csv(FIXTURES / "perov_5_test.csv.gz").iloc[:3].copy()
    rows["material_id"] = ["dup", "dup", "../evil"]
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["predict", "--csv", str(csv), "--model", str(_run(tmp_path / "run")), "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 material id(s) repeated or not usable as file names" in err and "'dup' -> dup_2" in err
    found = outputs.records(out)
    assert [r["name"] for r in found] == ["dup", "dup_2", safe_output_name("../evil")]
    assert [r["material_id"] for r in found] == ["dup", "dup", "../evil"]
    assert {p.name for p in tmp_path.iterdir()} == {"rows.csv", "out", "run"}  # nothing outside --out
    assert all((out / r["file"]).is_file() for r in found)


def test_a_name_redrawn_by_another_rank_is_read_from_the_shard_that_has_its_cif(tmp_path, crystals):
    out = tmp_path / "out"
    with PredictionWriter(out, INPUTS, shard="r00001") as w:  # rank 1 wrote it, then its CIF was lost
        w.add(_items(crystals[:1]))
    (out / outputs.records(out)[0]["file"]).unlink()
    with PredictionWriter(out, INPUTS, shard="r00000") as w:  # a rerun gives that batch to rank 0
        assert w.done() == set()
        w.add(_items(crystals[:1]))
    [r] = outputs.records(out)
    assert r["file"].startswith("cifs/r00000/") and (out / r["file"]).is_file()
    assert json.loads((out / "manifest.json").read_text())["count"] == 1


@pytest.mark.parametrize(("group", "species", "coords", "lattice"), [
    ("Fm-3m", ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], ("cubic", 5.64)),
    ("Fd-3m", ["Mg", "Al", "O"], [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [0.26, 0.26, 0.26]], ("cubic", 8.08)),
    ("R-3m", ["Li", "Co", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.24]], ("hexagonal", 2.82, 14.05)),
    ("P6_3/mmc", ["Zn", "O"], [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.38]], ("hexagonal", 3.25, 5.2)),
    ("C2/m", ["Al", "O"], [[0.09, 0, 0.2], [0.16, 0, 0.10]], ("monoclinic", 11.8, 2.9, 5.6, 104.0)),
    ("I4_1/amd", ["Ti", "O"], [[0, 0.75, 0.125], [0, 0.75, 0.333]], ("tetragonal", 3.78, 9.5)),
])
def test_symmetric_cif_equals_pymatgens_cifwriter(group, species, coords, lattice):
    """Independent check of the writer's own symmetric CIF (one spglib dataset): pymatgen's
    CifWriter with the same symprec describes the same crystal (site for site), both read back in
    the same space group."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    kind, *params = lattice
    lat = {"cubic": Lattice.cubic, "hexagonal": Lattice.hexagonal, "tetragonal": Lattice.tetragonal,
           "monoclinic": lambda a, b, c, beta: Lattice.monoclinic(a, b, c, beta)}[kind](*params)
    structure = Structure.from_spacegroup(group, lat, species, coords)
    text, number = symmetric_cif(structure.copy().get_primitive_structure())
    assert text.startswith("# generated by diffcsp-pp") and f"_symmetry_Int_Tables_number   {number}" in text
    ours = Structure.from_str(text, fmt="cif")
    theirs = Structure.from_str(str(CifWriter(structure, symprec=writer_module.WRITE_SYMPREC)), fmt="cif")
    assert number == detect_space_group(structure, 1e-3) == detect_space_group(ours, 1e-3)
    assert len(ours) == len(theirs)
    assert StructureMatcher(ltol=1e-4, stol=1e-4, angle_tol=1e-3, primitive_cell=False, scale=False).fit(ours, theirs)
    # one site per orbit, with its multiplicity
    sites = text.split("_atom_site_occupancy\n")[1].strip().splitlines()
    assert len(sites) == len(coords) and sum(int(line.split()[2]) for line in sites) == len(ours)
