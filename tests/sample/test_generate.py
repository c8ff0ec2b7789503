"""Sampling from a saved run directory: weights load without pickle, outputs keep their space group."""

from __future__ import annotations

import pytest

from diffcsp_pp import build_template
from diffcsp_pp.diffusion.process import DiffusionConfig
from diffcsp_pp.model import CSPNet, ModelConfig
from diffcsp_pp.sample import load_run, sample_structures
from diffcsp_pp.symmetry import detect_space_group
from tests.conftest import tiny_run_dir


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


def test_default_step_lr_reads_the_model_card(tmp_path):
    """A model card's ``step_lr`` (γ chosen on validation) overrides the official per-dataset value;
    a card without it, a malformed value or no card keeps the official value."""
    import json

    from diffcsp_pp.sample import STEP_LR, default_step_lr

    run = _run_dir(tmp_path, "csp")
    _, cfg = load_run(run)
    official = STEP_LR.get((cfg.dataset or "mp_20", cfg.task), 1e-5)
    assert default_step_lr(cfg) == default_step_lr(cfg, run) == official
    (run / "card.json").write_text(json.dumps({"step_lr": 2e-6}))
    assert default_step_lr(cfg, run) == 2e-6
    assert default_step_lr(cfg) == official
    for bad in ("2e-6", -1.0, True, None):
        (run / "card.json").write_text(json.dumps({"step_lr": bad}))
        assert default_step_lr(cfg, run) == official
    (run / "card.json").write_text("{not json")
    assert default_step_lr(cfg, run) == official
