"""Structure fingerprints from one site per orbit equal the all-sites statistics (real structures)."""

from __future__ import annotations

import numpy as np
import pytest

from diffcsp_pp.retrieval.fingerprints import (
    site_fingerprint_summary,
    site_orbits,
    weighted_site_summary,
)
from tests.conftest import load_fixture_structures


def test_weighted_summary_equals_statistics_of_repeated_rows(rng):
    feats = rng.normal(size=(5, 7))
    sizes = np.array([1, 4, 2, 8, 3])
    full = np.repeat(feats, sizes, axis=0)
    expected = np.concatenate([full.mean(0), full.std(0), full.min(0), full.max(0)])
    np.testing.assert_allclose(weighted_site_summary(feats, sizes), expected, rtol=1e-12, atol=1e-12)


def test_orbits_of_exact_structures():
    from pymatgen.core import Lattice, Structure

    rock_salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    reps, sizes = site_orbits(rock_salt)
    assert sorted(sizes.tolist()) == [4, 4] and {rock_salt[int(i)].specie.symbol for i in reps} == {"Na", "Cl"}
    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    assert sorted(site_orbits(rutile)[1].tolist()) == [2, 4]
    np.testing.assert_allclose(site_fingerprint_summary(rutile), site_fingerprint_summary(rutile, use_symmetry=False),
                               atol=1e-9)


@pytest.mark.parametrize("row", range(4))
def test_orbit_fingerprint_matches_all_sites_on_mp20_rows(row):
    # Materials Project CIFs carry ~1e-4 Å of noise, so equivalent sites differ in the last digits of
    # CrystalNN's weights; the positive-pair cutoff on these fingerprints is 0.3.
    mid, structure = load_fixture_structures("mp_20_pilot_train.csv.gz")[row]
    assert site_orbits(structure)[1].sum() == len(structure)
    fast = site_fingerprint_summary(structure)
    full = site_fingerprint_summary(structure, use_symmetry=False)
    assert np.isfinite(full).all(), mid
    np.testing.assert_allclose(fast, full, atol=5e-3)
