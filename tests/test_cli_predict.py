"""predict CLI: files written incrementally, manifest, rerun skips finished work, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diffcsp_pp.data.outputs import records
from tests.conftest import FIXTURES
from tests.test_api import _run


def cli(*args):
    return subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_predict_formula_and_csv(tmp_path):
    run = _run(tmp_path / "run")
    out = tmp_path / "out"
    res = cli("predict", "--formula", "SrTiO3", "--space-group", "221", "-n", "2", "--model", run, "--steps", "3",
              "--seed", "1", "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 2 and manifest["inputs"]["formula"] == "SrTiO3"
    assert {e["name"] for e in records(out)} == {"SrTiO3_sg221_0", "SrTiO3_sg221_1"}
    assert all((out / e["file"]).is_file() for e in records(out))
    assert (out / "extxyz" / "r00000.extxyz").read_text().count("Lattice=") == 2
    again = cli("predict", "--formula", "SrTiO3", "--space-group", "221", "-n", "2", "--model", run, "--steps", "3",
                "--seed", "1", "--out", out, "--quiet")
    assert again.returncode == 0 and "already" in again.stdout
    other = cli("predict", "--formula", "SrTiO3", "--space-group", "221", "-n", "3", "--model", run, "--out", out)
    assert other.returncode == 2 and "other arguments" in other.stderr

    # the manifest names the weights; the same name with other weights (a retrained or rebundled
    # model) does not resume into the folder: one clean line, exit 2
    import hashlib

    from safetensors.torch import load_file, save_file

    weights = run / "model.safetensors"
    assert manifest["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    state = load_file(weights)
    name = next(iter(state))
    save_file({**state, name: state[name] + 1e-3}, weights)
    retrained = cli("predict", "--formula", "SrTiO3", "--space-group", "221", "-n", "2", "--model", run, "--steps", "3",
                    "--seed", "1", "--out", out, "--quiet")
    assert retrained.returncode == 2 and "other model weights" in retrained.stderr
    assert len(retrained.stderr.strip().splitlines()) == 1

    out2 = tmp_path / "bench"
    res = cli("predict", "--csv", FIXTURES / "perov_5_test.csv.gz", "--limit", "6", "--batch-size", "4", "--model", run,
              "--steps", "3", "--out", out2, "--quiet")
    assert res.returncode == 0, res.stderr
    entries = records(out2)
    assert len(entries) == 6 and all(e["wyckoff"] for e in entries)
    (out2 / entries[0]["file"]).unlink()  # lose one result: the rerun makes only that one again
    res = cli("predict", "--csv", FIXTURES / "perov_5_test.csv.gz", "--limit", "6", "--batch-size", "4", "--model", run,
              "--steps", "3", "--out", out2, "--quiet")
    assert res.returncode == 0 and json.loads((out2 / "manifest.json").read_text())["count"] == 6

    # worker processes: the same structures (each batch keeps its random stream), and the same
    # inputs in the manifest (how the batches were spread over cores does not change the outputs)
    out3 = tmp_path / "bench_processes"
    res = cli("predict", "--csv", FIXTURES / "perov_5_test.csv.gz", "--limit", "6", "--batch-size", "4", "--model", run,
              "--steps", "3", "--processes", "--out", out3, "--quiet")
    assert res.returncode == 0, res.stderr
    manifest3 = json.loads((out3 / "manifest.json").read_text())
    assert manifest3["inputs"] == json.loads((out2 / "manifest.json").read_text())["inputs"]
    files3 = {e["name"]: e["file"] for e in records(out3)}
    for e in entries[1:]:
        assert (out3 / files3[e["name"]]).read_text() == (out2 / e["file"]).read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--formula", "SrTiO3", "--space-group", "999"], "space group"),
        (["--formula", "Xx3", "--space-group", "221"], "unknown element"),
        (["--formula", "SrTiO3", "--space-group", "221", "--wyckoff", "Sr:1a Ti:1a O:3c"], "only one orbit"),
        (["--formula", "MoS2", "--space-group", "194", "--wyckoff", "Mo:2a S:2c S:2d"], "always have more symmetry"),
        (["--formula", "SrTiO3"], "template_index.npz"),  # formula alone needs the model's template index
        (["--formula", "SrTiO3", "--space-group", "221", "--top-k", "2"], "--top-k applies"),
        (["--formula", "SrTiO3", "--space-group", "221", "-n", "0"], "must be >= 1"),
        (["--formula", "SrTiO3", "--space-group", "221", "--processes"], "apply to --csv"),
        (["--csv", "missing.csv"], "no such file"),
        (["--formula", "SrTiO3", "--space-group", "221", "--seed", "-1"], "--seed must be a non-negative"),
        ([], "either --formula"),
    ],
)
def test_predict_bad_input(tmp_path, args, message):
    run = _run(tmp_path / "run")
    res = cli("predict", *args, "--model", run, "--out", tmp_path / "o", "--steps", "2")
    assert res.returncode == 2, res.stdout
    assert message in res.stderr and "Traceback" not in res.stderr


def test_predict_bad_model(tmp_path):
    res = cli("predict", "--formula", "SrTiO3", "--space-group", "221", "--model", tmp_path / "nope", "--out", tmp_path / "o")
    assert res.returncode == 2 and "no model" in res.stderr


def test_predict_compile_without_a_compiler_is_one_clear_line(tmp_path):
    """--compile where torch.compile cannot build (no C++ compiler): exit 2 and one line, no traceback."""
    import os

    run = _run(tmp_path / "run")
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", "predict", "--csv",
                          str(FIXTURES / "perov_5_test.csv.gz"), "--limit", "2", "--model", str(run), "--steps", "2",
                          "--compile", "--out", str(tmp_path / "o"), "--quiet"],
                         capture_output=True, text=True, timeout=600, env=env, check=False)
    assert res.returncode == 2, res.stderr
    assert "torch.compile could not build the network" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
