"""Partial-noise refinement: the start state is on the family subspace and on the orbits; outputs keep
the template's space group and species; same seed, same result."""

from __future__ import annotations

import pytest
import torch

from diffcsp_pp.data.batch import CrystalDataset
from diffcsp_pp.diffusion.process import DiffusionConfig, Schedules
from diffcsp_pp.sample import load_run
from diffcsp_pp.sample.refine import partial_noise_init, refine_structures, refine_timesteps, start_step
from diffcsp_pp.symmetry import detect_space_group, project_k
from diffcsp_pp.symmetry.analyze import analyze
from diffcsp_pp.symmetry.wyckoff import expand_orbits, wrap_diff
from tests.conftest import load_fixture_structures, tiny_run_dir


@pytest.fixture(scope="module")
def infos():
    """MP-20 rows (many special positions, several lattice families) and Perov-5 rows."""
    mp = [analyze(s, symprec=0.1, structure_id=m) for m, s in load_fixture_structures("mp_20_pilot_train.csv.gz")[:12]]
    perov = [analyze(s, symprec=0.01, structure_id=m) for m, s in load_fixture_structures("perov_5_test.csv.gz")[:4]]
    return mp + perov


def test_steps():
    assert start_step(1000, 0.1) == 100 and start_step(1000, 0.999) == 999
    assert refine_timesteps(100) == list(range(100, 0, -1))
    short = refine_timesteps(100, 5)
    assert short[0] == 100 and short[-1] == 1 and len(short) == 5
    for bad in (0, 1, -0.1):
        with pytest.raises(ValueError, match="diff_ratio"):
            start_step(1000, bad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_initial_state_on_family_and_orbits(infos, dtype):
    assert len({i.space_group for i in infos}) > 5
    batch = CrystalDataset(infos, dtype=dtype).collate(range(len(infos)))
    sched = Schedules(DiffusionConfig())
    gen = torch.Generator().manual_seed(0)
    k, x, a = partial_noise_init(sched, batch, 100, gen)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    # lattice: exactly on the family subspace, close to the template (sqrt(1 - ab_100) = 0.17)
    assert torch.allclose(project_k(k, batch.space_group), k, atol=tol)
    assert not torch.allclose(k, batch.k)
    assert (k - batch.k).abs().max() < 1.5
    # coordinates: every atom regenerated from its anchor, anchors fixed by their own op (on the Wyckoff set)
    again = expand_orbits(x, batch.wyckoff_ops, batch.anchor_idx)
    assert wrap_diff(again, x).abs().max() < tol
    anchors = torch.unique(batch.anchor_idx)
    ops = batch.wyckoff_ops[anchors]
    on_set = (ops[:, :3, :3] @ x[anchors][..., None])[..., 0] + ops[:, :3, 3]
    assert wrap_diff(on_set, x[anchors]).abs().max() < tol
    # small displacement: sigma_100 = 0.0079 per free direction
    shift = wrap_diff(x, batch.frac_coords).abs()
    assert 0 < shift.max() < 0.06
    assert torch.equal(a, batch.atom_types)
    # special positions with no free parameter do not move
    fixed = torch.linalg.matrix_rank(batch.wyckoff_ops[:, :3, :3].double()) == 0
    assert fixed.any() and shift[fixed].max() < tol


def test_refine_keeps_template_symmetry(tmp_path, infos):
    model, cfg = load_run(tiny_run_dir(tmp_path))
    chosen = infos[:6] + infos[-2:]
    out = refine_structures(model, cfg.diffusion, chosen, seed=3, step_lr=1e-5, steps=4, n=2, max_edges=200)
    assert len(out) == 2 * len(chosen)
    for s, info in zip(out, [i for i in chosen for _ in range(2)], strict=True):
        assert [sp.symbol for sp in s.species] == info.atom_species
        assert detect_space_group(s, 1e-3) == info.space_group
    again = refine_structures(model, cfg.diffusion, chosen, seed=3, step_lr=1e-5, steps=4, n=2, max_edges=200)
    assert [s.frac_coords.tolist() for s in out] == [s.frac_coords.tolist() for s in again]
    with pytest.raises(ValueError, match="no templates"):
        refine_structures(model, cfg.diffusion, [], seed=0, step_lr=1e-5)
