"""The console script as a user runs it: output, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SPINEL = ROOT / "examples" / "MgAl2O4_mp-3536.cif"


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )


def test_symmetry_text_and_json():
    res = run("symmetry", SPINEL)
    assert res.returncode == 0, res.stderr
    assert "227 (Fd-3m)" in res.stdout and "32e" in res.stdout and "k " in res.stdout
    res = run("symmetry", SPINEL, "--json")
    payload = json.loads(res.stdout)
    assert payload["space_group"] == 227
    assert [o["wyckoff"] for o in payload["orbits"]] == ["8a", "16d", "32e"]
    assert payload["lattice"]["alpha"] == pytest.approx(90)


@pytest.mark.parametrize(
    "args, message",
    [
        (("symmetry", "no_such.cif"), "no such file"),
        (("symmetry", ROOT / "pyproject.toml"), "cannot read a structure"),
        (("symmetry", SPINEL, "--symprec", "0"), "must be > 0"),
        (("symmetry", SPINEL, "--symprec", "nan"), "must be > 0"),
        (("preprocess", "no_such.csv", "--out", "x"), "no such file"),
        (("preprocess", ROOT / "pyproject.toml", "--out", "x"), "expected a .csv"),
        (("preprocess", FIXTURES / "perov_5_test.csv.gz", "--out", "x", "--workers", "0"), "must be >= 1"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(args, message, tmp_path):
    res = run(*args, cwd=tmp_path)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if "error" in line]) == 1


def test_preprocess_cli(tmp_path):
    res = run("preprocess", FIXTURES / "perov_5_test.csv.gz", "--out", tmp_path, "--symprec", "0.01", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "30/30 crystals analysed" in res.stdout
    res = run("preprocess", FIXTURES / "perov_5_test.csv.gz", "--out", tmp_path, "--symprec", "0.01", "--quiet")
    assert "reused cache" in res.stdout


def test_datasets_cli():
    res = run("datasets")
    assert res.returncode == 0 and "mp_20/train" in res.stdout and "raw.githubusercontent.com" in res.stdout


_SPGLIB_NOISE = """
import sys
import numpy as np
import spglib
from pymatgen.core import Structure

if sys.argv[1] == "cli":
    from diffcsp_pp.cli.main import main

    main(["datasets"])
s = Structure.from_file(sys.argv[2])
lattice, frac, numbers = s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s]
rng = np.random.default_rng(0)
for _ in range(766):  # the 766th perturbation makes spglib 2.8 print its internal fallbacks at symprec 0.1
    eps = 10 ** rng.uniform(-3, -0.5)
    noisy = frac + rng.normal(scale=eps, size=frac.shape)
print(spglib.get_symmetry_dataset((lattice, noisy, numbers), symprec=0.1) is not None)
"""


def test_cli_keeps_spglib_warnings_off_the_terminal():
    # without the variable: another test may have run main() in this process, which sets it
    env = {k: v for k, v in os.environ.items() if k != "SPGLIB_WARNING"}
    plain = subprocess.run([sys.executable, "-c", _SPGLIB_NOISE, "plain", str(SPINEL)], capture_output=True, text=True,
                           timeout=300, env=env)
    if "spglib:" not in plain.stderr:
        pytest.skip("this spglib does not print a warning for the probe structure")
    cli = subprocess.run([sys.executable, "-c", _SPGLIB_NOISE, "cli", str(SPINEL)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert cli.returncode == 0, cli.stderr
    assert "spglib:" not in cli.stderr
