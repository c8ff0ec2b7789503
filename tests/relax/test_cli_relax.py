"""relax CLI (CIF, POSCAR, extxyz, output folders) and --relax / --rank energy on predict."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from diffcsp_pp.cli.main import main
from diffcsp_pp.data.outputs import records
from diffcsp_pp.relax import read_structures
from diffcsp_pp.symmetry.analyze import detect_space_group
from tests.test_api import _run


@pytest.fixture
def cli(capsys):
    """``diffcsp-pp ARGS`` in this process (no interpreter start-up): (exit status, stdout, stderr)."""

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _cif_space_group(path) -> str:
    text = path.read_text()
    return next(line.split(None, 1)[1].strip().strip("'\"") for line in text.splitlines()
                if line.startswith("_symmetry_space_group_name_H-M"))


def test_relax_reads_cif_poscar_extxyz_and_writes_symmetric_cifs(tmp_path, cli):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    sto = Structure(Lattice.cubic(4.127), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    nacl = Structure.from_spacegroup(225, Lattice.cubic(5.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sto.to(filename=str(tmp_path / "sto.cif"))
    nacl.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    write(tmp_path / "two.extxyz", [AseAtomsAdaptor.get_atoms(s) for s in (nacl, sto)], format="extxyz")
    out = tmp_path / "out"
    code, stdout, stderr = cli("relax", tmp_path / "sto.cif", tmp_path / "POSCAR", tmp_path / "two.extxyz", "--out", out,
                               "--quiet")
    assert code == 0, stderr
    manifest, entries = json.loads((out / "manifest.json").read_text()), records(out)
    assert [e["name"] for e in entries] == ["sto", "POSCAR", "two_0", "two_1"]
    assert manifest["requested_space_group_rate"] == 1.0
    for e in entries:
        r = e["relax"]
        assert r["status"] == "converged" and r["potential"].startswith("CHGNet")
        assert r["energy_after"] < r["energy_before"] and e["energy_per_atom"] == r["energy_after"]
        assert {"max_force_before", "max_force_after", "steps", "seconds"} <= set(r)
    files = {e["name"]: out / e["file"] for e in entries}
    sto_cif = files["sto"]
    assert _cif_space_group(sto_cif) == "Pm-3m" and _cif_space_group(files["POSCAR"]) == "Fm-3m"
    relaxed = Structure.from_file(sto_cif)
    assert relaxed.lattice.a == pytest.approx(3.905, rel=0.02) and detect_space_group(relaxed, 1e-3) == 221
    assert "4 structures in" in stdout and "4 converged" in stdout and "E=" in stdout
    # a rerun skips finished work
    code, stdout, _ = cli("relax", tmp_path / "sto.cif", tmp_path / "POSCAR", tmp_path / "two.extxyz", "--out", out,
                          "--quiet")
    assert code == 0 and "4 structures" in stdout
    # its own output folder is an input too, read through the manifest (the requested groups carry over)
    again = read_structures([out])
    assert [n for n, _ in again] == ["sto", "POSCAR", "two_0", "two_1"]
    assert [s.properties["space_group"] for _, s in again] == [221, 225, 225, 221]
    assert all(s.properties["relax"]["status"] == "converged" for _, s in again)


@pytest.mark.parametrize("args, message", [
    (["--potential", "nope"], "unknown potential 'nope'"),
    (["--fmax", "0"], "must be > 0"),
    (["--relax-steps", "1", "--strict"], "did not succeed (--strict)"),
])
def test_relax_bad_input_is_one_line(tmp_path, cli, args, message):
    Structure(Lattice.cubic(4.4), ["Sr", "Ti", "O", "O", "O"],
              [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).to(
        filename=str(tmp_path / "s.cif"))
    code, _, stderr = cli("relax", tmp_path / "s.cif", "--out", tmp_path / "o", *args)
    assert code == 2 and message in stderr.strip().splitlines()[-1]


def test_relax_missing_input(tmp_path, cli):
    code, _, stderr = cli("relax", tmp_path / "nothing.cif", "--out", tmp_path / "o")
    assert code == 2 and "no such file or folder" in stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("rank_args", [pytest.param(["--rank", "energy"], marks=pytest.mark.slow),
                                       ["--rank", "energy", "--no-relax"]])
def test_predict_rank_energy_orders_the_candidates(tmp_path, cli, rank_args):
    run = _run(tmp_path / "run")
    out = tmp_path / "out"
    code, stdout, stderr = cli("predict", "--formula", "NaCl", "--space-group", "225", "-n", "3", "--model", run,
                               "--steps", "3", "--seed", "1", "--out", out, "--quiet", "--relax-steps", "5", *rank_args)
    assert code == 0, stderr
    entries = records(out)
    energies = [e["energy_per_atom"] for e in entries]
    assert [e["name"] for e in entries] == [f"NaCl_sg225_{i}" for i in range(3)]
    known = [v for v in energies if v is not None]
    assert energies[: len(known)] == sorted(known) and [e["energy_rank"] for e in entries] == [1, 2, 3]
    assert all(e["detected_space_group"] == 225 for e in entries)
    # an untrained model's cell may leave atoms without neighbours: reported, never ranked first by mistake
    assert all(e["energy_per_atom"] is not None or e["relax"]["status"] == "failed" for e in entries if "relax" in e)
    assert ("relax" in entries[0]) == ("--no-relax" not in rank_args)
    assert "eV/atom" in stdout


def test_predict_relax_flags_are_checked(tmp_path, cli):
    run = _run(tmp_path / "run")
    code, _, stderr = cli("predict", "--formula", "NaCl", "--space-group", "225", "--model", run, "--out",
                          tmp_path / "o", "--no-relax")
    assert code == 2 and "--no-relax applies to --rank energy" in stderr
    code, _, stderr = cli("predict", "--csv", "x.csv", "--rank", "energy", "--model", run, "--out", tmp_path / "o")
    assert code == 2 and "--rank energy applies to --formula" in stderr
