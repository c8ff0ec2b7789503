"""analyze() on real benchmark rows: round trip, space group, orbit invariants, invariances, errors."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from diffcsp_pp import SymmetryError, analyze
from diffcsp_pp.symmetry import detect_space_group, expand_orbits, project_k, wrap_diff
from tests.conftest import DATASET_FIXTURES, load_fixture_structures

#: tolerance at which a rebuilt (exactly symmetric) crystal must show exactly its space group
EXACT_SYMPREC = 1e-3


@pytest.mark.parametrize("fixture", sorted(DATASET_FIXTURES))
def test_round_trip_on_real_rows(fixture):
    symprec = DATASET_FIXTURES[fixture]
    matcher = StructureMatcher()
    for mid, structure in load_fixture_structures(fixture):
        info = analyze(structure, symprec=symprec, structure_id=mid)
        rebuilt = info.to_structure()
        assert matcher.fit(structure, rebuilt), mid
        # independent space-group check of the input (pymatgen wraps spglib at the same tolerance)
        assert SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number() == info.space_group
        assert detect_space_group(rebuilt, EXACT_SYMPREC) == info.space_group, mid
        # orbit invariants
        sizes = np.bincount(np.unique(info.anchor_idx, return_inverse=True)[1])
        assert sizes.sum() == info.num_atoms == len(rebuilt)
        assert [int(w[:-1]) for w in info.wyckoff_letters] == sizes.tolist()
        assert len(info.species) == len(info.wyckoff_letters) == info.num_orbits
        anchors = np.unique(info.anchor_idx)
        rot = info.wyckoff_ops[anchors, :3, :3]
        np.testing.assert_allclose(rot @ rot, rot, atol=1e-12)
        assert np.abs(wrap_diff(expand_orbits(info.frac_coords, info.wyckoff_ops, info.anchor_idx), info.frac_coords)).max() < 1e-10
        assert np.all((info.frac_coords >= 0) & (info.frac_coords < 1))
        np.testing.assert_array_equal(project_k(info.k, info.space_group), info.k)
        assert rebuilt.composition.reduced_formula == structure.composition.reduced_formula


def test_known_crystal_spinel():
    from pathlib import Path

    from diffcsp_pp.data.sources import parse_cif

    cif = (Path(__file__).resolve().parents[2] / "examples" / "MgAl2O4_mp-3536.cif").read_text()
    info = analyze(parse_cif(cif))
    assert info.space_group == 227 and info.space_group_symbol == "Fd-3m"
    assert dict(zip(info.species, info.wyckoff_letters)) == {"Mg": "8a", "Al": "16d", "O": "32e"}
    np.testing.assert_allclose(info.anchor_coords[0], [0.125, 0.125, 0.125])  # origin choice 2
    assert info.num_atoms == 56
    lengths, angles = info.lattice_parameters
    np.testing.assert_allclose(lengths, lengths[0]) and np.testing.assert_allclose(angles, 90)


def test_invariance_to_rotation_translation_permutation_and_supercell(rng):
    structure = load_fixture_structures("mpts_52_val.csv.gz")[3][1]
    ref = analyze(structure)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotated = Structure(Lattice(structure.lattice.matrix @ q), structure.species, structure.frac_coords)
    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), rng.random(3), frac_coords=True)
    order = rng.permutation(len(structure))
    permuted = Structure(structure.lattice, [structure.species[i] for i in order], structure.frac_coords[order])
    supercell = structure.copy()
    supercell.make_supercell([1, 2, 1])
    for variant in (rotated, shifted, permuted, supercell):
        info = analyze(variant)
        assert info.space_group == ref.space_group
        assert sorted(zip(info.species, info.wyckoff_letters)) == sorted(zip(ref.species, ref.wyckoff_letters))
        np.testing.assert_allclose(info.k, ref.k, atol=1e-6)
        assert StructureMatcher().fit(info.to_structure(), ref.to_structure())


def test_to_structure_uses_only_anchor_coordinates(rng):
    info = analyze(load_fixture_structures("mp_20_pilot_train.csv.gz")[5][1])
    scrambled = info.frac_coords.copy()
    others = np.setdiff1d(np.arange(info.num_atoms), np.unique(info.anchor_idx))
    scrambled[others] = rng.random((others.size, 3))
    import dataclasses

    copy = dataclasses.replace(info, frac_coords=scrambled)
    np.testing.assert_allclose(copy.to_structure().frac_coords, info.to_structure().frac_coords, atol=1e-12)


def test_errors_name_reason_and_structure():
    disordered = Structure(Lattice.cubic(4), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    with pytest.raises(SymmetryError) as err:
        analyze(disordered, structure_id="alloy-1")
    assert err.value.reason == "disordered" and err.value.structure_id == "alloy-1"
    assert "alloy-1" in str(err.value)
    overlapping = Structure(Lattice.cubic(4), ["Na", "Na"], [[0, 0, 0], [0, 0, 1e-4]])
    with pytest.raises(SymmetryError) as err:
        analyze(overlapping, structure_id="bad-2")
    assert err.value.reason == "spglib_failed" and "bad-2" in str(err.value)
    stacked = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0, 0, 1e-4]])
    with pytest.raises(SymmetryError) as err:
        analyze(stacked)
    assert err.value.reason == "overlapping_orbits"


def test_symprec_changes_result_on_distorted_perovskite():
    """A slightly distorted cubic perovskite is cubic at 0.1 Å and lower at 0.001 Å."""
    s = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.505], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    assert analyze(s, symprec=0.1).space_group == 221
    low = analyze(s, symprec=1e-3)
    assert low.space_group == 99
    assert detect_space_group(low.to_structure(), EXACT_SYMPREC) == 99
