"""Same seed, same crystals, whatever the path: the Python API, ``predict --csv`` run through,
``predict --csv`` interrupted and resumed, and the benchmark driver (scripts/csp_benchmark.py) write
byte-identical CIFs; the same for ``generate`` (API, CLI, CLI interrupted and resumed).

Bundled models (package data, so no shared data is needed), a few real Perov-5 / MP-20 rows and
3 sampler steps keep it fast; the network and every sampler step are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcsp_pp import DiffCSPPP, SamplerConfig
from diffcsp_pp.cli.main import main
from diffcsp_pp.data.outputs import records
from diffcsp_pp.sample.writer import PredictionWriter, symmetric_cif
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
CSV = FIXTURES / "perov_5_test.csv.gz"
ROWS, BATCH, STEPS, SEED = 20, 8, 3, 7  # three batches: 8, 8 and 4 rows


def _cifs(folder: Path) -> dict[str, str]:
    """name -> CIF text of an output folder (or a folder of CIFs), read by the package's reader."""
    return {r["name"]: (folder / r["file"]).read_text() for r in records(folder)}


def _predict_args(out: Path, rows: int = ROWS, batch: int = BATCH) -> list[str]:
    return ["predict", "--csv", str(CSV), "--model", "perov5-csp-small", "--steps", str(STEPS), "--limit", str(rows),
            "--batch-size", str(batch), "--seed", str(SEED), "--out", str(out), "--quiet"]


class _StopAfter:
    """Makes PredictionWriter.add raise KeyboardInterrupt (Ctrl-C) once ``batches`` batches are written."""

    def __init__(self, monkeypatch, batches: int):
        original = PredictionWriter.add
        self.calls = 0

        def add(writer, items):
            original(writer, items)
            self.calls += 1
            if self.calls == batches:
                raise KeyboardInterrupt

        monkeypatch.setattr(PredictionWriter, "add", add)


@pytest.fixture(scope="module")
def api_cifs() -> dict[str, str]:
    model = DiffCSPPP.load("perov5-csp-small")
    out = model.predict_dataset(CSV, seed=SEED, sampler=SamplerConfig(steps=STEPS), batch_size=BATCH, limit=ROWS)
    assert len(out) == ROWS
    return {mid: symmetric_cif(s)[0] for mid, s in out}


def test_predict_csv_equals_the_api_uninterrupted_or_resumed(api_cifs, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert main(_predict_args(whole)) == 0
    assert _cifs(whole) == api_cifs

    resumed = tmp_path / "resumed"
    stop = _StopAfter(monkeypatch, batches=1)
    assert main(_predict_args(resumed)) == 130  # interrupted after the first batch
    assert len(_cifs(resumed)) == BATCH
    monkeypatch.undo()
    assert main(_predict_args(resumed)) == 0  # skips the first batch, draws the other two
    assert stop.calls == 1
    assert _cifs(resumed) == api_cifs
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["count"] == ROWS and manifest["complete"] is True
    # each row's seed is its batch's index in the whole input, not among the rows left to do
    assert sorted({e["seed"] for e in records(resumed)}) == [SEED, SEED + 1, SEED + 2]

    # a lost structure of the middle batch: the batch is drawn again, the same crystal comes back
    lost = records(resumed)[BATCH + 1]
    (resumed / lost["file"]).unlink()
    assert main(_predict_args(resumed)) == 0
    assert _cifs(resumed) == api_cifs


def test_benchmark_driver_equals_the_api(api_cifs, tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "csp_benchmark.py"), "--model", "perov5-csp-small",
                          "--csv", str(CSV), "--limit", str(ROWS), "--steps", str(STEPS), "--batch-size", str(BATCH),
                          "--seed", str(SEED), "--threads", "1", "--workers", "1", "--no-fingerprint", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert _cifs(out) == api_cifs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == ROWS and metrics["requested_space_group_rate"] == 1.0


def _generate_args(out: Path, n: int = 5, batch: int = 2) -> list[str]:
    return ["generate", "-n", str(n), "--model", "mp20-gen", "--steps", str(STEPS), "--batch-size", str(batch),
            "--seed", "4", "--out", str(out), "--quiet"]


def test_generate_cli_equals_the_api_uninterrupted_or_resumed(tmp_path, monkeypatch):
    structures = DiffCSPPP.load("mp20-gen").generate(5, seed=4, sampler=SamplerConfig(steps=STEPS), batch_size=2)
    api = {f"gen_{i:06d}": symmetric_cif(s)[0] for i, s in enumerate(structures)}
    assert [s.properties["seed"] for s in structures] == [4, 4, 5, 5, 6]  # batch b: seed + b
    whole = tmp_path / "whole"
    assert main(_generate_args(whole)) == 0
    assert _cifs(whole) == api
    resumed = tmp_path / "resumed"
    _StopAfter(monkeypatch, batches=2)
    assert main(_generate_args(resumed)) == 130
    assert len(_cifs(resumed)) == 4
    monkeypatch.undo()
    assert main(_generate_args(resumed)) == 0
    assert _cifs(resumed) == api


@pytest.mark.slow
def test_predict_csv_killed_and_resumed_equals_the_api(tmp_path):
    """A real kill (SIGKILL of the CLI process after its first batch is on disk), then a rerun."""
    rows, batch = 24, 4
    model = DiffCSPPP.load("perov5-csp-small")
    expected = {mid: symmetric_cif(s)[0] for mid, s in
                model.predict_dataset(CSV, seed=SEED, sampler=SamplerConfig(steps=STEPS), batch_size=batch, limit=rows)}
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "diffcsp_pp.cli.main", *_predict_args(out, rows, batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if manifest.is_file() and len(records(out)) >= batch:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert manifest.is_file()
    done = len(records(out))
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert _cifs(out) == expected
    if done == rows:
        pytest.skip("the first run finished before it could be killed (nothing was resumed)")
