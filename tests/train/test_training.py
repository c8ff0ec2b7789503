"""Training: a tiny model overfits, kill -9 and --resume give identical weights, 2-process gloo DDP runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffcsp_pp.data.batch import CrystalDataset
from diffcsp_pp.diffusion.process import DiffusionConfig, Schedules, diffusion_loss
from diffcsp_pp.folder import ModelFolder
from diffcsp_pp.model import CSPNet, ModelConfig
from diffcsp_pp.symmetry import analyze
from tests.conftest import FIXTURES, load_fixture_structures

TRAIN = FIXTURES / "perov_5_test.csv.gz"
VAL = FIXTURES / "mp_20_pilot_train.csv.gz"


def _cli(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "diffcsp_pp.cli.main", "train", "--train", str(TRAIN), "--val", str(VAL),
        "--out", str(out), "--cache-dir", str(cache), "--hidden", "16", "--layers", "1", "--num-freqs", "4",
        "--batch-size", "8", "--seed", "3", "--quiet", "--threads", "1", *extra,
    ]


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_tiny_model_overfits_a_handful_of_crystals(task):
    """8 perovskites, a fixed noise level: the loss must fall at least 5x in 300 Adam steps."""
    infos = [analyze(s, 0.01, structure_id=m) for m, s in load_fixture_structures("perov_5_test.csv.gz")[:8]]
    batch = CrystalDataset(infos).collate(range(8))
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=64, num_layers=2, num_freqs=16, task=task))
    sched, cfg = Schedules(DiffusionConfig()), DiffusionConfig()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(step):
        # the same 4 noise draws cycle, so the model can memorise them
        return diffusion_loss(model, sched, cfg, batch, torch.Generator().manual_seed(step % 4))["loss"]

    with torch.no_grad():
        start = sum(float(loss_at(i)) for i in range(4)) / 4
    for step in range(300):
        opt.zero_grad()
        loss = loss_at(step)
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = sum(float(loss_at(i)) for i in range(4)) / 4
    assert end < start / 5, (start, end)


def test_kill_and_resume_gives_identical_weights(tmp_path):
    cache = tmp_path / "cache"
    steps = ["--max-steps", "24", "--checkpoint-every", "4", "--val-every", "2"]
    ref = subprocess.run(_cli(tmp_path / "ref", cache, *steps), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(run, cache, *steps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    last = run / "checkpoints" / "last.ckpt"
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)  # let it train a few more steps past the checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    resumed = subprocess.run(_cli(run, cache, *steps, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the training state itself (raw weights, optimiser) agrees too
    ca = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    cb = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ca["global_step"] == cb["global_step"] == 24
    for key, value in ca["state_dict"].items():
        if key in ("cpu_seconds", "wall_seconds"):  # the run's clocks: measurements, not training state
            continue
        assert torch.equal(value, cb["state_dict"][key]), key


def test_resume_errors(tmp_path):
    res = subprocess.run(_cli(tmp_path / "none", tmp_path / "c", "--resume"), capture_output=True, text=True)
    assert res.returncode == 2 and "nothing to resume" in res.stderr and "Traceback" not in res.stderr


def test_ddp_two_processes_gloo(tmp_path):
    res = subprocess.run(
        _cli(tmp_path / "ddp", tmp_path / "cache", "--max-steps", "3", "--devices", "2", "--accelerator", "cpu"),
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 3


def test_init_from_weights(tmp_path):
    cache = tmp_path / "cache"
    first = subprocess.run(_cli(tmp_path / "a", cache, "--max-steps", "2"), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(_cli(tmp_path / "b", cache, "--max-steps", "1", "--lr", "1e-12", "--init-from", str(tmp_path / "a")),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    # one step at lr 1e-12 from a's weights: b ends where a ended
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    # b states its whole training: a's 2 steps recorded in its config, then its own 1 (with a gone too)
    prior = ModelFolder(tmp_path / "b").config().init_from_training
    assert prior["global_step"] == 2
    total = ModelFolder(tmp_path / "b").total_training()
    assert total["global_step"] == 3 and [seg["global_step"] for seg in total["segments"]] == [2, 1]
    assert total["cpu_hours"] == pytest.approx(prior["cpu_hours"] + total["segments"][1]["cpu_hours"])
    # Adam's first step moves every weight by about lr: the warm-up (500 steps by default after
    # --init-from) scales that step by 1/warm-up; --warmup-steps 0 shows the jolt it prevents
    # with the EMA on, it continues from the weights at its full decay (0.999): the jolt of a 1-step
    # run without warm-up reaches the exported EMA weights only 1/1000th
    for name, warm, bound in (("w", ["--no-ema"], 1e-2 / 500 * 1.01), ("w0", ["--no-ema", "--warmup-steps", "0"], None),
                              ("e0", ["--warmup-steps", "0"], 1e-2 * 1e-3 * 1.01)):
        run = subprocess.run(_cli(tmp_path / name, cache, "--max-steps", "1", "--lr", "1e-2", *warm,
                                  "--init-from", str(tmp_path / "a")), capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        after = load_file(tmp_path / name / "model.safetensors")
        moved = max(float((after[k] - a[k]).abs().max()) for k in a)
        if bound is None:
            assert moved > 0.5e-2  # the jolt: about lr
        else:
            assert 0 < moved <= bound
            assert ModelFolder(tmp_path / name).config().train.warmup_steps == (0 if "0" in warm else 500)
    shutil.rmtree(tmp_path / "a")  # recorded at the start: the source may go
    assert ModelFolder(tmp_path / "b").total_training()["global_step"] == 3
    # a bundled model by name (the small preset's shape), its history recorded from its card
    named = subprocess.run(_cli(tmp_path / "n", cache, "--max-steps", "1", "--hidden", "128", "--layers", "4",
                                "--num-freqs", "128", "--init-from", "perov5-csp-small"),
                           capture_output=True, text=True, timeout=600)
    assert named.returncode == 0, named.stderr[-2000:]
    card = ModelFolder.resolve("perov5-csp-small").card()["training"]
    assert ModelFolder(tmp_path / "n").total_training()["global_step"] == card["global_step"] + 1
    bad = subprocess.run(_cli(tmp_path / "c", cache, "--max-steps", "1", "--init-from", str(tmp_path / "nope")),
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no weights to start from" in bad.stderr


def test_cpu_hour_budget_stops_with_a_checkpoint_and_the_clock_survives_resume(tmp_path):
    """--max-cpu-hours ends the run with last.ckpt at the final step; the CPU/wall clocks are logged,
    written to training_state.json, and continue (not restart) when the run is resumed."""
    import json

    import pandas as pd

    cache, run = tmp_path / "cache", tmp_path / "run"
    budget = ["--max-steps", "100000", "--checkpoint-every", "1000", "--val-every", "1000"]
    first = subprocess.run(_cli(run, cache, *budget, "--max-cpu-hours", "0.001"),  # 3.6 CPU seconds
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    state = json.loads((run / "training_state.json").read_text())
    assert 0.001 <= state["cpu_hours"] < 0.01 and state["wall_hours"] > 0
    assert 0 < state["global_step"] < 1000  # stopped by the budget, not by max-steps or a checkpoint
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == state["global_step"]
    assert float(ckpt["state_dict"]["cpu_seconds"]) >= 3.6

    again = subprocess.run(_cli(run, cache, *budget, "--max-cpu-hours", "0.002", "--resume"),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    later = json.loads((run / "training_state.json").read_text())
    assert later["global_step"] > state["global_step"] and 0.002 <= later["cpu_hours"] < 0.01
    logged = pd.concat(pd.read_csv(f) for f in sorted((run / "logs").rglob("metrics.csv")))
    hours = logged["cpu_hours"].dropna().to_numpy()
    assert len(hours) >= 2 and (hours[1:] >= hours[:-1]).all()  # one clock across both sessions


def test_a_moved_run_resumes_and_keeps_writing_last_ckpt(tmp_path):
    """A run directory copied elsewhere (another machine) and resumed there keeps its checkpoint in
    last.ckpt; Lightning's version counter once wrote last-v1.ckpt beside the stale last.ckpt, so a
    second --resume silently restarted from the old step."""
    cache, first, moved = tmp_path / "cache", tmp_path / "first", tmp_path / "moved"
    steps = ["--checkpoint-every", "4", "--val-every", "1000"]
    done = subprocess.run(_cli(first, cache, *steps, "--max-steps", "8"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copytree(first, moved)
    again = subprocess.run(_cli(moved, cache, *steps, "--max-steps", "16", "--resume"),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in (moved / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    ckpt = torch.load(moved / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 16


def test_nonfinite_batches_are_skipped_and_counted_and_resume_falls_back_to_best(tmp_path, monkeypatch, capsys):
    """Two batches with a NaN loss (injected) are skipped and counted, not fatal (clipping once
    crashed on the missing gradients); a run whose last.ckpt is gone resumes from best.ckpt and
    says so; an unreadable checkpoint is one line."""
    import json

    import diffcsp_pp.train.module as module
    from diffcsp_pp.cli.main import main

    real, calls = module.diffusion_loss, []

    def poisoned(*args, **kwargs):
        terms = dict(real(*args, **kwargs))
        calls.append(1)
        if len(calls) in (2, 3):
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(module, "diffusion_loss", poisoned)
    run = tmp_path / "run"
    args = _cli(run, tmp_path / "cache", "--max-steps", "4", "--val-every", "1", "--accelerator", "cpu")[3:]
    assert main(args) == 0
    state = json.loads((run / "training_state.json").read_text())
    assert state["nonfinite_batches"] == 2 and state["global_step"] == 4
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["nonfinite_batches"] == 2
    assert all(torch.isfinite(t).all() for t in load_file(run / "model.safetensors").values())

    (run / "checkpoints" / "last.ckpt").unlink()
    with pytest.warns(UserWarning, match="resuming from .*best.ckpt"):
        assert main([*args[:args.index("--max-steps")], "--max-steps", "5", "--resume"]) == 0
    assert json.loads((run / "training_state.json").read_text())["global_step"] == 5

    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and len(err.strip().splitlines()) == 1 and "weights_only" not in err


def test_combine_training_adds_up_stages_and_keeps_the_last_stage_values():
    from diffcsp_pp.folder import combine_training

    first = {"global_step": 100, "epoch": 3, "cpu_hours": 1.0, "val_loss": 0.5, "machine": "cpu"}
    second = combine_training(first, {"global_step": 50, "epoch": 1, "cpu_hours": 0.5, "val_loss": 0.4, "machine": "gpu"})
    third = combine_training(second, {"global_step": 10, "epoch": 0, "cpu_hours": 0.25, "val_loss": 0.3})
    assert third["global_step"] == 160 and third["epoch"] == 4 and third["cpu_hours"] == 1.75
    assert third["val_loss"] == 0.3 and "machine" not in third  # the last stage's, not carried over
    assert [s["global_step"] for s in third["segments"]] == [100, 50, 10]
    assert [s.get("machine") for s in third["segments"]] == ["cpu", "gpu", None]
    assert combine_training(None, {"global_step": 7}) == {"global_step": 7}  # from scratch: no segments


def test_warmup_factor():
    from diffcsp_pp.train.config import warmup_factor

    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
