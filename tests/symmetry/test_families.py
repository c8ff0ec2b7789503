"""Family constraints of k for all 230 space groups, checked on the lattices they produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice
from pymatgen.symmetry.groups import SpaceGroup

from diffcsp_pp.symmetry import (
    K_MASK,
    check_space_group,
    crystal_family,
    k_mask_bias,
    lattice_from_k,
    project_k,
)

ALL_GROUPS = range(1, 231)


def _family_holds(family: str, lattice: np.ndarray) -> None:
    lat = Lattice(lattice)
    a, b, c = lat.abc
    al, be, ga = lat.angles
    tol = 1e-7
    if family == "cubic":
        assert a == pytest.approx(b, rel=tol) and b == pytest.approx(c, rel=tol)
        np.testing.assert_allclose([al, be, ga], 90, atol=1e-6)
    elif family == "hexagonal":
        assert a == pytest.approx(b, rel=tol)
        np.testing.assert_allclose([al, be, ga], [90, 90, 120], atol=1e-6)
    elif family == "tetragonal":
        assert a == pytest.approx(b, rel=tol)
        np.testing.assert_allclose([al, be, ga], 90, atol=1e-6)
    elif family == "orthorhombic":
        np.testing.assert_allclose([al, be, ga], 90, atol=1e-6)
    elif family == "monoclinic":
        np.testing.assert_allclose([al, ga], 90, atol=1e-6)


@pytest.mark.parametrize("sg", ALL_GROUPS)
def test_projected_k_gives_lattice_of_family(sg):
    rng = np.random.default_rng(sg)
    family = crystal_family(sg)
    for _ in range(3):
        k = project_k(rng.normal(size=6) * 0.3 + np.array([0, 0, 0, 0, 0, 2.5]), sg)
        _family_holds(family, lattice_from_k(k))
        np.testing.assert_array_equal(project_k(k, sg), k)  # idempotent


def test_family_names_agree_with_pymatgen():
    for sg in ALL_GROUPS:
        system = SpaceGroup.from_int_number(sg).crystal_system
        expected = "hexagonal" if system in ("trigonal", "hexagonal") else system
        assert crystal_family(sg) == expected, sg


def test_generic_lattice_is_not_in_lower_families():
    """The mask frees exactly what the family leaves free: a random k of a family keeps its freedom."""
    rng = np.random.default_rng(0)
    k = project_k(rng.normal(size=6) * 0.3, 10)  # monoclinic
    lat = Lattice(lattice_from_k(k))
    assert abs(lat.angles[1] - 90) > 1e-3 and abs(lat.a - lat.b) > 1e-3


def test_batched_numpy_and_torch():
    groups = np.arange(1, 231)
    k = np.random.default_rng(1).normal(size=(230, 6))
    proj = project_k(k, groups)
    for i, sg in enumerate(groups):
        np.testing.assert_array_equal(proj[i], project_k(k[i], int(sg)))
    proj_t = project_k(torch.from_numpy(k), torch.from_numpy(groups))
    np.testing.assert_array_equal(proj_t.numpy(), proj)
    mask, bias = k_mask_bias(torch.tensor([225]), like=torch.zeros(1, dtype=torch.float32))
    assert mask.dtype == torch.float32 and mask.tolist() == [[0, 0, 0, 0, 0, 1]]
    assert np.all(mask.numpy() * bias.numpy() == 0)
    assert np.isnan(K_MASK[0]).all()


@pytest.mark.parametrize("bad", [0, 231, -1, 2.5, "P1", None])
def test_bad_space_group(bad):
    with pytest.raises(ValueError, match="space group"):
        check_space_group(bad)


def test_bad_space_group_in_array():
    with pytest.raises(ValueError, match="1-230"):
        project_k(np.zeros((2, 6)), np.array([1, 231]))
