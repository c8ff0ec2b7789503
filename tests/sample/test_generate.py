"""Sampling from a saved run directory: weights load without pickle, outputs keep their space group."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from diffcsp_pp import build_template
from diffcsp_pp.diffusion.process import DiffusionConfig
from diffcsp_pp.errors import CompileError
from diffcsp_pp.model import CSPNet, ModelConfig
from diffcsp_pp.sample import load_run, sample_structures
from diffcsp_pp.symmetry import detect_space_group
from tests.conftest import default_sigint, tiny_run_dir


def _run_dir(tmp_path, task):
    return tiny_run_dir(tmp_path, task)


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_sampled_structures_keep_space_group_and_composition(tmp_path, task):
    model, cfg = load_run(_run_dir(tmp_path, task))
    templates = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")]),
                 build_template(62, [("Ca", "c"), ("Ti", "b"), ("O", "c"), ("O", "d")])]
    steps = list(range(20, 0, -1))
    out = sample_structures(model, cfg.diffusion, templates, seed=1, step_lr=1e-5, n=2, timesteps=steps, max_edges=60)
    assert len(out) == 4
    again = sample_structures(model, cfg.diffusion, templates, seed=1, step_lr=1e-5, n=2, timesteps=steps, max_edges=60)
    for s, t in zip(out, [templates[0]] * 2 + [templates[1]] * 2):
        assert len(s) == t.num_atoms
        if task == "csp":
            assert [sp.symbol for sp in s.species] == t.atom_species
        assert detect_space_group(s, 1e-3) == t.space_group
    assert [a.frac_coords.tolist() for a in out] == [b.frac_coords.tolist() for b in again]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_run(tmp_path)
    _run_dir(tmp_path, "csp")
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot load"):
        load_run(tmp_path)
    with pytest.raises(ValueError, match="n must be"):
        sample_structures(CSPNet(ModelConfig(hidden=8, num_layers=1, num_freqs=2)), DiffusionConfig(),
                          [build_template(221, [("Na", "a")])], seed=0, step_lr=1e-5, n=0)


def test_default_step_lr_comes_from_the_model_config(tmp_path):
    """A model's ``sampler.step_lr`` in config.json (γ chosen on validation) overrides the official
    per-dataset value; null keeps the official value; a bad value is refused; the card does not
    count, except (one release, with a DeprecationWarning) in an old config without "sampler"."""
    import json

    from diffcsp_pp.folder import ModelFolder
    from diffcsp_pp.sample import STEP_LR, default_step_lr
    from diffcsp_pp.sample.config import SamplerConfig
    from diffcsp_pp.sample.engine import Engine

    run = _run_dir(tmp_path, "csp")
    _, cfg = load_run(run)
    official = STEP_LR.get((cfg.dataset or "mp_20", cfg.task), 1e-5)
    assert default_step_lr(cfg) == default_step_lr(cfg, run) == cfg.step_lr() == official
    raw = json.loads((run / "config.json").read_text())
    assert raw["sampler"] == {"step_lr": None, "formula_diff_ratio": None}
    raw["sampler"]["step_lr"] = 2e-6
    (run / "config.json").write_text(json.dumps(raw))
    assert default_step_lr(cfg, run) == 2e-6
    model, cfg2 = ModelFolder(run).load()
    assert Engine(model, cfg2).config.step_lr == 2e-6
    assert Engine(model, cfg2, SamplerConfig(step_lr=0.0)).config.step_lr == 0.0  # an explicit γ wins, 0 included
    (run / "card.json").write_text(json.dumps({"step_lr": 9e-6}))
    assert default_step_lr(cfg, run) == 2e-6  # the card is documentation
    for bad in ("2e-6", -1.0, True):
        raw["sampler"]["step_lr"] = bad
        (run / "config.json").write_text(json.dumps(raw))
        with pytest.raises(ValueError, match="step_lr"):
            ModelFolder(run).config()
    del raw["sampler"]  # a folder written before the "sampler" section
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.warns(DeprecationWarning, match="card"):
        assert ModelFolder(run).config().step_lr() == 9e-6
    # a card that would decide the defaults but cannot be read is refused, not silently ignored (#18)
    for broken in ("{not json", "[1, 2]", json.dumps({"step_lr": "fast"})):
        (run / "card.json").write_text(broken)
        with pytest.raises(ValueError, match="card.json"):
            ModelFolder(run).config()
    (run / "card.json").unlink()  # no card at all: the official value
    assert ModelFolder(run).config().step_lr() == official


def test_worker_processes_give_the_same_structures_as_threads(tmp_path):
    """``parallel="processes"`` samples each group in a spawned worker with a copy of the network;
    every group keeps its own random stream, so the structures equal those of the threads (and of
    one worker). A second call reuses the pool; new weights start a new one."""
    from diffcsp_pp.sample import runner

    model, cfg = load_run(_run_dir(tmp_path, "csp"))
    templates = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")]),
                 build_template(99, [("Pb", "a"), ("Ti", "b"), ("O", "b"), ("O", "c")]),
                 build_template(62, [("Ca", "c"), ("Ti", "b"), ("O", "c"), ("O", "d")])]
    kwargs = {"seed": 3, "step_lr": 1e-5, "n": 2, "timesteps": list(range(10, 0, -1)), "group_size": 2}
    one = sample_structures(model, cfg.diffusion, templates, workers=1, **kwargs)
    threads = sample_structures(model, cfg.diffusion, templates, workers=2, **kwargs)
    try:
        procs = sample_structures(model, cfg.diffusion, templates, workers=2, parallel="processes", **kwargs)
        pool = runner._POOL["pool"]
        again = sample_structures(model, cfg.diffusion, templates[:2], workers=2, parallel="processes", **kwargs)
        assert runner._POOL["pool"] is pool
        with torch.no_grad():
            model.coord_head.weight.mul_(2.0)
        changed = sample_structures(model, cfg.diffusion, templates, workers=2, parallel="processes", **kwargs)
        assert runner._POOL["pool"] is not pool
    finally:
        runner.shutdown_pool()
    expected = [s.frac_coords.tolist() for s in one]
    assert [s.frac_coords.tolist() for s in threads] == expected
    assert [s.frac_coords.tolist() for s in procs] == expected
    assert [s.frac_coords.tolist() for s in again] == expected[:4]
    assert [s.lattice.matrix.tolist() for s in procs] == [s.lattice.matrix.tolist() for s in one]
    assert [s.frac_coords.tolist() for s in changed] != expected
    for s, t in zip(procs, [t for t in templates for _ in range(2)]):
        assert detect_space_group(s, 1e-3) == t.space_group


def test_parallel_options_are_checked(tmp_path):
    model, cfg = load_run(_run_dir(tmp_path, "csp"))
    templates = [build_template(221, [("Na", "a")])] * 3
    with pytest.raises(ValueError, match="parallel must be"):
        sample_structures(model, cfg.diffusion, templates, seed=0, step_lr=1e-5, parallel="gpu")
    with pytest.raises(ValueError, match="workers must be"):
        sample_structures(model, cfg.diffusion, templates, seed=0, step_lr=1e-5, workers=0)
    with pytest.raises(ValueError, match="needs parallel='processes'"):
        sample_structures(model, cfg.diffusion, templates, seed=0, step_lr=1e-5, group_size=1, workers=2,
                          compile_network=True)


@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="torch.compile needs a C++ compiler")
def test_compiled_network_samples_the_same_structures(tmp_path):
    """``compile_network=True`` (torch.compile) gives the eager sampler's structures up to float rounding."""
    model, cfg = load_run(_run_dir(tmp_path, "csp"))
    templates = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")]),
                 build_template(99, [("Pb", "a"), ("Ti", "b"), ("O", "b"), ("O", "c")])]
    kwargs = {"seed": 5, "step_lr": 1e-5, "n": 2, "timesteps": list(range(6, 0, -1)), "workers": 1}
    eager = sample_structures(model, cfg.diffusion, templates, **kwargs)
    try:
        fast = sample_structures(model, cfg.diffusion, templates, compile_network=True, **kwargs)
    except CompileError as err:  # a machine whose C++ tool chain cannot build inductor's kernels
        if any(key in str(err) for key in ("CxxCompiler", "CppCompileError", "C++")):
            pytest.skip(f"torch.compile cannot build here: {err}")
        raise
    for a, b, t in zip(eager, fast, [t for t in templates for _ in range(2)]):
        assert np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-4)
        assert np.abs((a.frac_coords - b.frac_coords + 0.5) % 1.0 - 0.5).max() < 1e-4
        assert detect_space_group(b, 1e-3) == t.space_group


def _alive(pids) -> list[int]:
    """The pids still running (a zombie, exited but not reaped, counts as stopped)."""
    import os

    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] != "Z":
                    out.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            continue
    return out


def _stopped_within(pids, seconds: float) -> list[int]:
    """Wait up to ``seconds`` for ``pids`` to stop; the ones still running."""
    import time

    deadline = time.time() + seconds
    while _alive(pids) and time.time() < deadline:
        time.sleep(0.3)
    return _alive(pids)


def _start_long_run(run_dir, long_call: str):
    """A Python process that starts a pool of 2 workers, prints their pids, then runs ``long_call``
    (source lines using ``model``, ``cfg`` and the 4 templates ``t``); (process, worker pids)."""
    import subprocess
    import sys
    import time

    script = f"""
from diffcsp_pp import build_template
from diffcsp_pp.sample import load_run, sample_structures
from diffcsp_pp.sample import runner
model, cfg = load_run({str(run_dir)!r})
t = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")])] * 4
sample_structures(model, cfg.diffusion, t, seed=0, step_lr=1e-5, timesteps=[2, 1], group_size=1, workers=2,
                  parallel="processes")
print(" ".join(str(p) for p in runner._POOL["pool"]._processes), flush=True)
{long_call}
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    time.sleep(1.0)
    return proc, pids


def test_worker_processes_stop_when_their_parent_is_killed(tmp_path):
    """Killing a run (SIGKILL of the parent) does not leave worker processes sampling on."""
    import signal

    proc, pids = _start_long_run(_run_dir(tmp_path, "csp"), """
sample_structures(model, cfg.diffusion, t * 50, seed=0, step_lr=1e-5, group_size=1, workers=2, parallel="processes")
""")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _stopped_within(pids, 15)


def test_ctrl_c_stops_the_worker_processes_at_once(tmp_path):
    """SIGINT to the parent (Ctrl-C) ends the run promptly: the queued groups are dropped and the
    workers terminated, not left to finish what was handed to them."""
    import signal
    import time

    proc, pids = _start_long_run(_run_dir(tmp_path, "csp"), """
try:
    sample_structures(model, cfg.diffusion, t * 100, seed=0, step_lr=1e-5, group_size=100, workers=2,
                      parallel="processes")
except KeyboardInterrupt:
    print("interrupted", flush=True)
""")
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "interrupted" in out
    # measured: 0.4 s; 9.5 s when the workers finished the groups they held
    assert time.time() - sent < 5
    assert not _stopped_within(pids, 15)



def test_seeds_beyond_64_bits_wrap_instead_of_overflowing(tmp_path):
    """Group streams are seeded with (seed·1,000,003 + group) mod 2⁶⁴: a seed of 2⁶⁴ + 5 gives seed 5's
    structures (torch would overflow on it, and a retry round multiplies seeds further)."""
    model, cfg = load_run(_run_dir(tmp_path, "csp"))
    templates = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")])] * 2
    kwargs = {"step_lr": 1e-5, "timesteps": [3, 2, 1], "group_size": 1, "workers": 1}
    small = sample_structures(model, cfg.diffusion, templates, seed=5, **kwargs)
    big = sample_structures(model, cfg.diffusion, templates, seed=2**64 + 5, **kwargs)
    assert [s.frac_coords.tolist() for s in big] == [s.frac_coords.tolist() for s in small]
    huge = sample_structures(model, cfg.diffusion, templates, seed=2**62, **kwargs)
    assert all(detect_space_group(s, 1e-3) == 221 for s in huge)


def test_a_broken_worker_pool_is_replaced(tmp_path):
    """A worker that dies (killed, out of memory) breaks its pool for good; the next call starts a
    new pool instead of failing on the cached one."""
    import os
    import signal
    import time

    from diffcsp_pp.sample import runner

    model, cfg = load_run(_run_dir(tmp_path, "csp"))
    templates = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")])] * 2
    kwargs = {"seed": 1, "step_lr": 1e-5, "timesteps": [2, 1], "group_size": 1, "workers": 2, "parallel": "processes"}
    try:
        first = sample_structures(model, cfg.diffusion, templates, **kwargs)
        pool = runner._POOL["pool"]
        os.kill(next(iter(pool._processes)), signal.SIGKILL)
        deadline = time.time() + 20
        while not pool._broken and time.time() < deadline:
            time.sleep(0.1)
        assert pool._broken
        second = sample_structures(model, cfg.diffusion, templates, **kwargs)
        assert runner._POOL["pool"] is not pool
    finally:
        runner.shutdown_pool()
    assert [s.frac_coords.tolist() for s in second] == [s.frac_coords.tolist() for s in first]


def _sample_in_forked_child(run_dir, queue) -> None:
    from diffcsp_pp.sample import runner

    model, cfg = load_run(run_dir)
    t = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")])] * 2
    out = sample_structures(model, cfg.diffusion, t, seed=1, step_lr=1e-5, timesteps=[2, 1], group_size=1, workers=2,
                            parallel="processes")
    runner.shutdown_pool()
    queue.put(len(out))


def test_a_forked_child_leaves_its_parents_pool_alone(tmp_path):
    """A forked child inherits the parent's pool object: sampling there starts the child's own pool
    and must not stop (or use) the parent's workers."""
    import multiprocessing as mp

    from diffcsp_pp.sample import runner

    run_dir = _run_dir(tmp_path, "csp")
    model, cfg = load_run(run_dir)
    t = [build_template(221, [("Sr", "a"), ("Ti", "b"), ("O", "c")])] * 2
    kwargs = {"seed": 1, "step_lr": 1e-5, "timesteps": [2, 1], "group_size": 1, "workers": 2, "parallel": "processes"}
    try:
        first = sample_structures(model, cfg.diffusion, t, **kwargs)
        pool = runner._POOL["pool"]
        pids = list(pool._processes)
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_sample_in_forked_child, args=(str(run_dir), queue))
        child.start()
        assert queue.get(timeout=120) == 2
        child.join(timeout=60)
        assert _alive(pids) == pids
        again = sample_structures(model, cfg.diffusion, t, **kwargs)
        assert runner._POOL["pool"] is pool
    finally:
        runner.shutdown_pool()
    assert [s.frac_coords.tolist() for s in again] == [s.frac_coords.tolist() for s in first]
