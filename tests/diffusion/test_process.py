"""Noising and sampling respect the symmetry after every sub-step; seeds reproduce; loss targets."""

from __future__ import annotations

import pytest
import spglib
import torch

from diffcsp_pp.data.batch import CrystalDataset
from diffcsp_pp.diffusion.process import DiffusionConfig, Schedules, diffusion_loss, noise_batch, sample
from diffcsp_pp.model import CSPNet, ModelConfig
from diffcsp_pp.symmetry import analyze, expand_orbits, lattice_from_k, project_k, wrap_diff
from tests.conftest import load_fixture_structures


@pytest.fixture(scope="module")
def dataset():
    rows = load_fixture_structures("mp_20_pilot_train.csv.gz")[:5] + load_fixture_structures("carbon_24_val.csv.gz")[:3]
    return CrystalDataset([analyze(s, 0.1, structure_id=m) for m, s in rows], dtype=torch.float64)


def _check_symmetric(batch, k, x):
    torch.testing.assert_close(project_k(k, batch.space_group), k, rtol=0, atol=1e-12)
    assert torch.all((x >= 0) & (x < 1))
    again = expand_orbits(x, batch.wyckoff_ops, batch.anchor_idx)
    assert wrap_diff(again, x).abs().max() < 1e-9


def test_noising_keeps_symmetry_and_targets_are_orbit_shared(dataset):
    batch = dataset.collate(range(len(dataset)))
    sched = Schedules(DiffusionConfig())
    for task in ("csp", "gen"):
        noisy = noise_batch(sched, batch, torch.Generator().manual_seed(3), task)
        _check_symmetric(batch, noisy.k_t, noisy.frac_coords_t)
        torch.testing.assert_close(noisy.target_x, noisy.target_x[batch.anchor_idx])
        if task == "gen":
            torch.testing.assert_close(noisy.atom_input, noisy.atom_input[batch.anchor_idx])
    # the spglib space group survives noising at small t (small σ)
    noisy = noise_batch(sched, batch, torch.Generator().manual_seed(4), "csp", t=torch.full((batch.num_graphs,), 50))
    for b in range(batch.num_graphs):
        m = batch.batch_idx == b
        cell = (lattice_from_k(noisy.k_t[b].numpy()), noisy.frac_coords_t[m].numpy(), batch.atom_types[m].numpy())
        ds = spglib.get_symmetry_dataset(cell, symprec=1e-3)
        assert ds is not None and ds.number == int(batch.space_group[b])


class OracleLattice(torch.nn.Module):
    """A real (untrained) CSPNet whose lattice output is replaced by the exact ε of the clean k.

    With it the reverse DDPM must land exactly on the clean k, for any respacing, which tests the
    lattice update; the coordinate and type outputs stay the network's own.
    """

    def __init__(self, net, sched, k0):
        super().__init__()
        self.net, self.sched, self.k0, self.config = net, sched, k0, net.config

    def forward(self, batch, k_t, x_t, t, a):
        out = self.net(batch, k_t, x_t, t, a)
        ab = self.sched.alpha_bars[t][:, None]
        out.pred_eps_k = (k_t - ab.sqrt() * self.k0) / (1 - ab).sqrt()
        return out


@pytest.mark.parametrize("task", ["csp", "gen"])
@pytest.mark.parametrize("corrector", ["diffcsp++", "diffcsp"])
def test_sampler_contract(dataset, task, corrector):
    torch.manual_seed(0)
    sched = Schedules(DiffusionConfig())
    batch = dataset.collate(range(len(dataset)))
    model = OracleLattice(CSPNet(ModelConfig(hidden=16, num_layers=1, num_freqs=4, task=task)).double(), sched, batch.k)
    batch = dataset.collate(range(len(dataset)))
    seen = []

    def check(state):
        seen.append(state.stage)
        _check_symmetric(batch, state.k, state.frac_coords)
        if task == "gen":
            torch.testing.assert_close(state.atom_input, state.atom_input[batch.anchor_idx])

    steps = [999, 700, 400, 100, 20, 1]
    k1, x1, a1 = sample(model, sched, batch, torch.Generator().manual_seed(7), 1e-5, steps, corrector, check)
    assert seen.count("predictor") == len(steps) and seen.count("corrector") == len(steps)
    torch.testing.assert_close(k1, batch.k, rtol=0, atol=1e-8)  # exact ε ⇒ exact clean lattice
    k0, _, _ = sample(model, sched, batch, torch.Generator().manual_seed(7), 1e-5, steps, corrector, clip_k=None)
    torch.testing.assert_close(k0, batch.k, rtol=0, atol=1e-8)  # the unclipped (paper) update too
    k2, x2, a2 = sample(model, sched, batch, torch.Generator().manual_seed(7), 1e-5, steps, corrector)
    assert torch.equal(k1, k2) and torch.equal(x1, x2) and torch.equal(a1, a2)
    k3, x3, _ = sample(model, sched, batch, torch.Generator().manual_seed(8), 1e-5, steps, corrector)
    torch.testing.assert_close(k3, batch.k, rtol=0, atol=1e-8)  # the oracle lattice is seed-independent
    assert not torch.equal(x1, x3)
    if task == "csp":
        assert torch.equal(a1, batch.atom_types)
    else:
        assert a1.min() >= 1 and a1.max() <= 100
        assert torch.equal(a1, a1[batch.anchor_idx])
    # every output crystal has its template's space group
    for b in range(batch.num_graphs):
        m = batch.batch_idx == b
        cell = (lattice_from_k(k1[b].numpy()), x1[m].numpy(), batch.atom_types[m].numpy())
        ds = spglib.get_symmetry_dataset(cell, symprec=1e-3)
        assert ds is not None and ds.number == int(batch.space_group[b])


def test_bad_sampler_arguments(dataset):
    model = CSPNet(ModelConfig(hidden=8, num_layers=1, num_freqs=2)).double()
    sched = Schedules(DiffusionConfig())
    batch = dataset.collate([0])
    with pytest.raises(ValueError, match="decrease"):
        sample(model, sched, batch, torch.Generator(), 1e-5, [5, 10])
    with pytest.raises(ValueError, match="corrector"):
        sample(model, sched, batch, torch.Generator(), 1e-5, [5, 1], corrector="x")


def test_loss_terms_and_fixed_k_entries_contribute_nothing(dataset):
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=16, num_layers=1, num_freqs=4, task="gen")).double()
    sched = Schedules(DiffusionConfig())
    batch = dataset.collate(range(len(dataset)))
    terms = diffusion_loss(model, sched, DiffusionConfig(), batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"loss", "loss_k", "loss_x", "loss_a"}
    assert torch.isclose(terms["loss"], terms["loss_k"] + terms["loss_x"] + 20 * terms["loss_a"])
    noisy = noise_batch(sched, batch, torch.Generator().manual_seed(0), "csp")
    bias = project_k(torch.zeros_like(noisy.eps_k), batch.space_group)
    mask = project_k(torch.ones_like(noisy.eps_k), batch.space_group) - bias
    # the target noise carries the bias in the fixed slots, exactly as the projected prediction does
    torch.testing.assert_close(noisy.eps_k * (1 - mask), bias)
    pred = torch.randn_like(noisy.eps_k)
    diff = project_k(pred, batch.space_group) - noisy.eps_k
    assert torch.all(diff[mask == 0] == 0)


def test_clipped_lattice_update_equals_paper_update_inside_the_box(dataset):
    """Clipping k̂₀ only changes the k update when k̂₀ leaves the box: with a huge box the clipped
    posterior-mean form equals the paper's ε form; with the default box a wildly wrong network
    still ends in a physical cell."""
    from diffcsp_pp.diffusion.process import K_CLIP

    torch.manual_seed(0)
    sched = Schedules(DiffusionConfig())
    batch = dataset.collate(range(len(dataset)))
    net = CSPNet(ModelConfig(hidden=16, num_layers=1, num_freqs=4)).double()
    steps = [999, 600, 300, 50, 1]
    paper = sample(net, sched, batch, torch.Generator().manual_seed(3), 1e-5, steps, clip_k=None)[0]
    wide = sample(net, sched, batch, torch.Generator().manual_seed(3), 1e-5, steps,
                  clip_k=((-1e9,) * 6, (1e9,) * 6))[0]
    torch.testing.assert_close(wide, paper, rtol=1e-9, atol=1e-9)

    class Wild(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.config = net, net.config

        def forward(self, *args):
            out = self.net(*args)
            out.pred_eps_k = out.pred_eps_k * 50.0
            return out

    k = sample(Wild(), sched, batch, torch.Generator().manual_seed(3), 1e-5, steps)[0]
    low, high = (torch.tensor(v, dtype=k.dtype) for v in K_CLIP)
    assert torch.all(k >= low - 1e-6) and torch.all(k <= high + 1e-6)


@pytest.mark.parametrize("same_size", [False, True])
@pytest.mark.parametrize("task", ["csp", "gen"])
def test_fourier_plan_does_not_change_the_samples(dataset, task, same_size):
    """The sampler's precomputed Fourier products (``fourier_plan=True``, the default) give the same
    trajectory as computing every product at every evaluation; crystals of one size (Perov-5) take
    the plan's dense layout."""
    torch.manual_seed(0)
    sched = Schedules(DiffusionConfig())
    if same_size:
        infos = [analyze(s, 0.1) for _, s in load_fixture_structures("perov_5_test.csv.gz")[:6]]
        batch = CrystalDataset(infos, dtype=torch.float64).collate(range(len(infos)))
    else:
        batch = dataset.collate(range(len(dataset)))
    net = CSPNet(ModelConfig(hidden=16, num_layers=2, num_freqs=6, task=task)).double()
    steps = [999, 700, 400, 100, 1]
    planned = sample(net, sched, batch, torch.Generator().manual_seed(5), 1e-5, steps)
    full = sample(net, sched, batch, torch.Generator().manual_seed(5), 1e-5, steps, fourier_plan=False)
    torch.testing.assert_close(planned[0], full[0], rtol=1e-9, atol=1e-9)
    assert wrap_diff(planned[1], full[1]).abs().max() < 1e-9
    assert torch.equal(planned[2], full[2])
