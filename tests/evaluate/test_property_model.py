"""The DimeNet++ property model (the paper's d_E evaluator): basis functions against scipy, triplets
against brute force, invariances of the whole network, and the real CDVAE weights against DFT."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.special import eval_legendre, spherical_jn

from diffcsp_pp.evaluate.property_model import (
    DimeNetPlusPlus,
    PropertyModel,
    collate,
    crystal_graph,
    default_property_models_dir,
    envelope,
    legendre,
    resolve_property_model,
    spherical_bessel,
    spherical_bessel_zeros,
    triplets,
)
from tests.conftest import FIXTURES, load_fixture_structures

MODELS = default_property_models_dir()
HAS_WEIGHTS = MODELS is not None and (MODELS / "mp20" / "model.safetensors").is_file()


def test_spherical_bessel_matches_scipy():
    """Within 1e-8 (far below the network's float32) down to x = 0.3; in use x ≥ 0.15 π for j_0
    (bonds ≥ 0.35 Å at cutoff 7 Å) and larger for higher orders, whose first roots are larger."""
    x = torch.linspace(0.3, 40.0, 500, dtype=torch.float64)
    ours = spherical_bessel(6, x).numpy()
    for ell in range(7):
        assert np.allclose(ours[:, ell], spherical_jn(ell, x.numpy()), atol=1e-8, rtol=1e-7), ell


def test_legendre_matches_scipy():
    z = torch.linspace(-1, 1, 101, dtype=torch.float64)
    ours = legendre(6, z).numpy()
    for ell in range(7):
        assert np.allclose(ours[:, ell], eval_legendre(ell, z.numpy()), atol=1e-12)


def test_bessel_zeros_are_roots_in_order():
    z = spherical_bessel_zeros(7, 6)
    assert np.allclose(z[0], np.arange(1, 7) * np.pi)
    for ell in range(7):
        assert np.all(np.abs(spherical_jn(ell, z[ell])) < 1e-10)
        assert np.all(np.diff(z[ell]) > 1.0)
        # no root skipped: strictly between the first and the sixth root j_l changes sign 4 times
        grid = np.linspace(z[ell][0] + 1e-6, z[ell][-1] - 1e-6, 20000)
        assert np.sum(np.diff(np.sign(spherical_jn(ell, grid))) != 0) == 4
        assert spherical_jn(ell, np.linspace(0.5, z[ell][0] - 1e-6, 2000)).min() > 0  # none before the first
    assert np.all(z[1:, 0] > z[:-1, 0])  # roots of higher orders start later (interlacing)


def test_envelope_is_smooth_at_cutoff():
    x = torch.tensor([1.0 - 1e-7], dtype=torch.float64, requires_grad=True)
    u = envelope(x, 5)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert abs(u.item()) < 1e-5 and abs(g.item()) < 1e-4 and abs(h.item()) < 1e-2
    assert envelope(torch.tensor([1.5], dtype=torch.float64), 5).item() == 0.0
    small = torch.tensor([1e-3], dtype=torch.float64)
    assert envelope(small, 5).item() == pytest.approx(1e3, rel=1e-6)


def test_triplets_match_brute_force(rng):
    n = 7
    edges = rng.integers(0, n, size=(2, 40))
    edges = edges[:, edges[0] != edges[1]]
    ei = torch.as_tensor(edges)
    idx_kj, idx_ji = triplets(ei, n)
    ours = sorted(zip(idx_kj.tolist(), idx_ji.tolist()))
    expected = sorted((a, b) for a, b in itertools.product(range(edges.shape[1]), repeat=2)
                      if edges[1, a] == edges[0, b] and edges[0, a] != edges[1, b])
    assert ours == expected


def _random_model(seed=0):
    torch.manual_seed(seed)
    return DimeNetPlusPlus().eval()


def _predict(model, structures):
    with torch.no_grad():
        b = collate([crystal_graph(s) for s in structures])
        return model(b["z"], b["edge_index"], b["edge_vec"], b["batch"], b["num_graphs"])[:, 0].numpy()


def test_graph_is_crystalnn_with_both_directions():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    prim = rocksalt.get_primitive_structure()
    g = crystal_graph(prim)
    # 6 Na-Cl bonds per Na, each stored once by CrystalNN and used in both directions
    assert g.edge_index.shape == (2, 12)
    d = np.linalg.norm(g.positions[g.edge_index[0]] + g.images @ g.lattice - g.positions[g.edge_index[1]], axis=1)
    assert np.allclose(d, 5.64 / 2, atol=1e-6)
    assert set(map(tuple, g.edge_index.T)) == {(0, 1), (1, 0)}


def test_prediction_invariant_to_cell_choice_rotation_order_and_batching():
    """Rotation, another cell of the same lattice, site order and batch composition leave the
    prediction unchanged. (A supercell does not: CDVAE's triplet rule k ≠ i compares atom indices,
    so in a primitive cell it drops angles between two images of one atom that a supercell keeps.)"""
    model = _random_model()
    structures = [s for _, s in load_fixture_structures("mp_20_pilot_train.csv.gz")[:4]]
    base = _predict(model, structures)
    scale = np.abs(base).max()
    assert np.all(np.isfinite(base)) and np.ptp(base) > 1e-3 * scale
    alone = np.array([_predict(model, [s])[0] for s in structures])
    assert np.allclose(base, alone, atol=1e-5 * scale)
    s = structures[1]
    other_cell = Structure(Lattice(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]) @ s.lattice.matrix), s.species,
                           s.cart_coords, coords_are_cartesian=True)
    rot = Structure(Lattice(s.lattice.matrix @ np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]),
                    s.species, s.frac_coords)
    perm = np.random.default_rng(1).permutation(len(s))
    shuffled = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    others = _predict(model, [other_cell, rot, shuffled])
    assert np.allclose(others, base[1], atol=1e-5 * scale)


@pytest.mark.skipif(not HAS_WEIGHTS, reason="CDVAE property weights (../shared/models/cdvae-property) not present")
def test_mp20_weights_track_dft_formation_energy():
    """The port with the real weights: on MP-20 rows the formation-energy predictions follow DFT
    (a wrong port is off by about the target's spread, ~1 eV/atom; the full pilot_test gives MAE 0.024)."""
    model = PropertyModel.load("mp20")
    assert model.target == "formation_energy_per_atom"
    rows = pd.read_csv(FIXTURES / "mp_20_pilot_train.csv.gz")
    structures = [s for _, s in load_fixture_structures("mp_20_pilot_train.csv.gz")]
    pred = model.predict(structures)
    y = rows["formation_energy_per_atom"].to_numpy()
    assert np.isfinite(pred).all()
    assert np.abs(pred - y).mean() < 0.08
    assert np.corrcoef(pred, y)[0, 1] > 0.98


def test_missing_weights_name_the_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCSP_PP_PROPERTY_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DIFFCSP_PP_PROPERTY_MODELS"):
        resolve_property_model("mp20")
    with pytest.raises(FileNotFoundError):
        PropertyModel.load("mp20")
