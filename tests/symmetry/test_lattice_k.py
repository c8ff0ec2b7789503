"""k <-> lattice: round trips, known values, rotation invariance, pymatgen parity, no mutation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice

from diffcsp_pp.symmetry import (
    HEXAGONAL_K1,
    K_BASIS,
    gram_from_k,
    gram_from_lattice,
    k_from_gram,
    k_from_lattice,
    lattice_from_k,
    lattice_from_params,
    params_from_gram,
    symmetric_lattice_from_k,
)
from tests.conftest import random_lattice


def test_basis_is_orthonormal_and_symmetric():
    gram = np.einsum("aij,bij->ab", K_BASIS, K_BASIS)
    np.testing.assert_allclose(gram, np.eye(6), atol=1e-15)
    np.testing.assert_allclose(K_BASIS, K_BASIS.transpose(0, 2, 1))


@pytest.mark.parametrize("seed", range(20))
def test_k_round_trip(seed):
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(8, 6)) * 0.5
    np.testing.assert_allclose(k_from_gram(gram_from_k(k)), k, atol=1e-10)
    np.testing.assert_allclose(k_from_lattice(symmetric_lattice_from_k(k)), k, atol=1e-10)
    np.testing.assert_allclose(k_from_lattice(lattice_from_k(k)), k, atol=1e-10)


@pytest.mark.parametrize("seed", range(20))
def test_lattice_round_trip_preserves_gram(seed):
    rng = np.random.default_rng(seed)
    lat = random_lattice(rng)
    k = k_from_lattice(lat)
    np.testing.assert_allclose(gram_from_lattice(lattice_from_k(k)), lat @ lat.T, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(gram_from_k(k), lat @ lat.T, rtol=1e-10, atol=1e-9)


def test_known_values():
    np.testing.assert_allclose(k_from_lattice(4.0 * np.eye(3)), [0, 0, 0, 0, 0, math.sqrt(3) * math.log(4)], atol=1e-12)
    hexagonal = Lattice.hexagonal(3.1, 5.2).matrix
    k = k_from_lattice(hexagonal)
    assert k[0] == pytest.approx(-math.sqrt(2) * math.log(3) / 4, abs=1e-12)
    assert k[0] == pytest.approx(HEXAGONAL_K1)
    np.testing.assert_allclose(k[1:4], 0, atol=1e-12)


def test_rotation_invariance(rng):
    lat = random_lattice(rng)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(k_from_lattice(lat @ q), k_from_lattice(lat), atol=1e-12)


def test_params_and_orientation_match_pymatgen(rng):
    for _ in range(10):
        lengths, angles = rng.uniform(2, 9, 3), rng.uniform(65, 115, 3)
        ref = Lattice.from_parameters(*lengths, *angles)
        np.testing.assert_allclose(lattice_from_params(lengths, angles), ref.matrix, atol=1e-10)
        got_l, got_a = params_from_gram(gram_from_lattice(ref.matrix))
        np.testing.assert_allclose(got_l, ref.abc, rtol=1e-12)
        np.testing.assert_allclose(got_a, ref.angles, atol=1e-9)


def test_batched_and_torch_match_numpy(rng):
    lats = np.stack([random_lattice(rng) for _ in range(5)])
    k_np = k_from_lattice(lats)
    k_t = k_from_lattice(torch.from_numpy(lats))
    assert isinstance(k_t, torch.Tensor) and k_t.dtype == torch.float64
    np.testing.assert_allclose(k_t.numpy(), k_np, atol=1e-12)
    np.testing.assert_allclose(lattice_from_k(torch.from_numpy(k_np)).numpy(), lattice_from_k(k_np), atol=1e-10)
    np.testing.assert_allclose([k_from_lattice(l) for l in lats], k_np, atol=1e-12)


def test_gradients_flow_through_torch_path():
    k = torch.tensor([0.1, -0.2, 0.05, 0.3, -0.1, 2.0], dtype=torch.float64, requires_grad=True)
    gram = gram_from_k(k)
    torch.autograd.gradcheck(gram_from_k, (k,))
    assert gram.shape == (3, 3)


def test_inputs_are_not_mutated(rng):
    lat = random_lattice(rng)
    copy = lat.copy()
    k = k_from_lattice(lat)
    k_copy = k.copy()
    lattice_from_k(k)
    np.testing.assert_array_equal(lat, copy)
    np.testing.assert_array_equal(k, k_copy)


def test_singular_lattice_is_rejected():
    flat = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])
    with pytest.raises(ValueError, match="positive definite"):
        k_from_lattice(flat)
