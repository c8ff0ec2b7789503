"""Sampling on Lightning (``--accelerator / --devices / --num-nodes``): the same crystals as one
process, whatever the number of processes (2 gloo CPU processes here), each rank writing its own
shard; resume after a lost shard; clear refusals.

Bundled models (package data), 3 sampler steps and a few crystals keep it short; the DDP runs
start real Lightning processes (``python -m diffcsp_pp.cli.main``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffcsp_pp import DiffCSPPP, SamplerConfig, jobs
from diffcsp_pp.cli.main import main
from diffcsp_pp.data import outputs
from diffcsp_pp.sample.distributed import Devices, rank_share
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
CSV = FIXTURES / "perov_5_test.csv.gz"


def _cifs(folder: Path) -> dict[str, str]:
    return {r["name"]: (folder / r["file"]).read_text() for r in outputs.records(folder)}


def _cli(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _generate(out: Path, *extra) -> list[str]:
    return ["generate", "-n", "5", "--model", "mp20-gen", "--steps", "3", "--batch-size", "2", "--seed", "4",
            "--out", str(out), "--quiet", *extra]


def test_rank_share_is_a_deterministic_round_robin_padded_to_equal_steps():
    todo = list(range(7))
    shares = [rank_share(todo, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4, None], [2, 5, None]]
    assert sorted(x for s in shares for x in s if x is not None) == todo
    assert rank_share([], 0, 2) == [] and rank_share([5], 1, 2) == [None]


def test_one_lightning_process_draws_what_the_engine_draws():
    model = DiffCSPPP.load("mp20-gen")
    plan = model.generation_plan(3, seed=2)
    engine = model.engine(SamplerConfig(steps=3))
    here = jobs.generate(engine, plan, seed=2, batch_size=2)
    on_lightning = jobs.generate(engine, plan, seed=2, batch_size=2, devices=Devices("cpu", 1))
    assert [s.as_dict() for s in on_lightning] == [s.as_dict() for s in here]


def test_generate_on_two_gloo_processes_equals_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_generate(one)) == 0
    res = _cli(*_generate(two, "--accelerator", "cpu", "--devices", "2"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert _cifs(two) == _cifs(one)  # byte-identical CIFs, name by name
    assert sorted(p.name for p in (two / "records").glob("*.jsonl")) == ["r00000.jsonl", "r00001.jsonl"]
    assert {r["file"].split("/")[1] for r in outputs.records(two)} == {"r00000", "r00001"}  # each rank its shard
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["count"] == 5 and manifest["complete"] is True
    assert manifest["inputs"] == json.loads((one / "manifest.json").read_text())["inputs"]
    assert res.stdout.count("5 structures in") == 1  # rank 0 reports, once


@pytest.mark.slow
def test_predict_csv_on_two_processes_equals_one_and_resumes_a_lost_shard(tmp_path):
    args = ["predict", "--csv", CSV, "--model", "perov5-csp-small", "--steps", "3", "--limit", "10", "--batch-size",
            "3", "--seed", "5", "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*map(str, args), "--out", str(one)]) == 0
    res = _cli(*args, "--out", two, "--accelerator", "cpu", "--devices", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _cifs(two) == _cifs(one) and len(_cifs(one)) == 10
    # rank 1's work lost (as if killed before it wrote): the rerun draws exactly those batches again
    lost = {r["name"] for r in outputs.records(two) if r["file"].startswith("cifs/r00001/")}
    for r in outputs.records(two):
        if r["name"] in lost:
            (two / r["file"]).unlink()
    res = _cli(*args, "--out", two, "--accelerator", "cpu", "--devices", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _cifs(two) == _cifs(one)
    # and one process resumes a two-process folder (the shards do not depend on the process count)
    assert main([*map(str, args), "--out", str(two)]) == 0 and _cifs(two) == _cifs(one)


@pytest.mark.parametrize("extra, message", [
    (["--devices", "2", "--processes"], "--processes applies to one process"),
    (["--devices", "2", "--device", "cpu"], "--device is for one process"),
    (["--device", "tpu:x"], "--device must be a torch device"),
])
def test_device_flags_are_checked(tmp_path, capsys, extra, message):
    assert main(_generate(tmp_path / "o", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_predict_formula_takes_no_lightning_flags(tmp_path, capsys):
    rc = main(["predict", "--formula", "SrTiO3", "--space-group", "221", "--model", "perov5-csp-small",
               "--devices", "2", "--out", str(tmp_path / "o")])
    assert rc == 2 and "apply to --csv" in capsys.readouterr().err


def test_a_concurrent_run_into_the_same_out_is_refused(tmp_path, capsys):
    from diffcsp_pp.sample.writer import PredictionWriter

    out = tmp_path / "o"
    assert main(_generate(out, "-n", "1")) == 0  # (a one-atom crystal: no edges; the network takes it)
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    holder = PredictionWriter(out, inputs, shard=outputs.shard_name(0))  # a run in progress
    try:
        assert main(_generate(out, "-n", "1")) == 2
        assert "another run is writing" in capsys.readouterr().err
    finally:
        holder.close()


def test_device_flags_parse_like_train():
    from diffcsp_pp.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["generate", "-n", "1", "--out", "o", "--accelerator", "gpu", "--devices", "4",
                              "--num-nodes", "2", "--precision", "bf16-mixed"])
    assert (args.accelerator, args.devices, args.num_nodes, args.precision) == ("gpu", 4, 2, "bf16")
    assert parser.parse_args(["predict", "--csv", "x", "--out", "o", "--precision", "32-true"]).precision == "fp32"
    train = parser.parse_args(["train", "--out", "o", "--accelerator", "cpu", "--devices", "2", "--num-nodes", "3"])
    assert (train.accelerator, train.devices, train.num_nodes) == ("cpu", 2, 3)
