"""Faults injected into real runs: Ctrl-C (a real SIGINT) mid-run, a corrupt cache entry, runs at the
same time sharing a cache, a full disk (where a small tmpfs can be mounted). Kill -9 and resume is
tests/test_same_seed.py (byte-identical CIFs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from diffcsp_pp.data import outputs
from diffcsp_pp.data.preprocess import PreprocessConfig, preprocess
from diffcsp_pp.data.store import load_records
from tests.conftest import FIXTURES, default_sigint

CSV = FIXTURES / "perov_5_test.csv.gz"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffcsp_pp.cli.main", *args]


def _predict(out: Path, steps: int = 5, rows: int = 12) -> list[str]:
    return _cli("predict", "--csv", str(CSV), "--model", "perov5-csp-small", "--steps", str(steps), "--batch-size",
                "2", "--limit", str(rows), "--seed", "1", "--out", str(out), "--quiet")


def test_sigint_mid_run_is_one_line_and_the_rerun_completes(tmp_path):
    env = {**os.environ, "DIFFCSP_PP_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "o"
    proc = subprocess.Popen(_predict(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    deadline = time.time() + 300

    def written() -> int:  # structures written so far (the append-only records; read by the one reader)
        try:
            return len(outputs.records(out))
        except (OSError, ValueError):
            return 0

    while time.time() < deadline and proc.poll() is None and written() == 0:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert 0 < written() < 12
    rerun = subprocess.run(_predict(out), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    found = outputs.records(out)
    files = [r["file"] for r in found]
    assert len(found) == 12 and len(set(files)) == 12  # nothing lost, nothing twice
    assert json.loads((out / "manifest.json").read_text())["count"] == 12


def test_corrupt_cache_entry_is_detected_and_rebuilt(tmp_path):
    """A cache .npz cut short (a full disk, a killed copy) is rebuilt, not read (it once broke every
    later run until the user found and deleted it)."""
    first = preprocess(CSV, tmp_path, PreprocessConfig(symprec=0.01), progress=False)
    data = first.output.read_bytes()
    first.output.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = preprocess(CSV, tmp_path, PreprocessConfig(symprec=0.01), progress=False)
    assert not again.cached and again.output == first.output
    assert len(load_records(again.output)) == first.succeeded == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is used quietly from now on
        assert preprocess(CSV, tmp_path, PreprocessConfig(symprec=0.01), progress=False).cached


@pytest.mark.slow
def test_concurrent_runs_sharing_a_cache(tmp_path):
    """Two predict runs started together on one input share DIFFCSP_PP_CACHE (both preprocess it,
    each entry is renamed into place atomically): both finish, with the same crystals."""
    env = {**os.environ, "DIFFCSP_PP_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen(_predict(tmp_path / name, steps=3, rows=30), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for name in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    a, b = ({r["name"]: (tmp_path / n / r["file"]).read_text() for r in outputs.records(tmp_path / n)} for n in ("a", "b"))
    assert len(a) == 30 and a == b
    assert not list((tmp_path / "cache").rglob(".*.tmp*"))  # no temporary file left behind


@pytest.mark.slow
def test_full_disk_is_one_line(tmp_path):
    """--out on a 64 KiB tmpfs: the run stops with one line (where the test may mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        res = subprocess.run(_predict(mnt / "o", steps=3), capture_output=True, text=True, timeout=600,
                             env={**os.environ, "DIFFCSP_PP_CACHE": str(tmp_path / "cache")})
        assert res.returncode == 2 and "No space left" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
