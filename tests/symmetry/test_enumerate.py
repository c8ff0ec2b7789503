"""Wyckoff enumeration against hand-worked cases and against brute force."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from diffcsp_pp.symmetry import build_template, wyckoff_positions
from diffcsp_pp.symmetry.enumerate import formula_unit_multiples, parse_formula, wyckoff_assignments


def test_parse_formula():
    assert parse_formula("SrTiO3") == {"Sr": 1, "Ti": 1, "O": 3}
    assert parse_formula("Sr2Ti2O6") == {"Sr": 2, "Ti": 2, "O": 6}
    assert parse_formula("C") == {"C": 1}
    # pymatgen's grammar: groups expand, small fractions scale to whole atoms
    assert parse_formula("Ca(OH)2") == {"Ca": 1, "O": 2, "H": 2}
    assert parse_formula("Li2Fe(SO4)2") == {"Li": 2, "Fe": 1, "S": 2, "O": 8}
    assert parse_formula("UBr4(NO2)2") == {"U": 1, "Br": 4, "N": 2, "O": 4}
    assert parse_formula("SrTiO3.5") == {"Sr": 2, "Ti": 2, "O": 7}
    for bad, msg in [("srtio3", "malformed"), ("Xx2O", "unknown element 'Xx'"), ("", "malformed"),
                     ("Sr0O", "must be >= 1"), ("Fe0.3333O", "makes whole"), ("C1e400", "finite"), (None, "malformed"),
                     ("NaCl;rm", "malformed"), ("C" * 300, "formula_chars")]:
        with pytest.raises(ValueError, match=msg):
            parse_formula(bad)


def test_perovskite_in_pm3m():
    found = wyckoff_assignments(221, {"Sr": 1, "Ti": 1, "O": 3})
    as_sets = {tuple(sorted(a)) for a in found}
    assert (("O", "3c"), ("Sr", "1a"), ("Ti", "1b")) in as_sets
    assert (("O", "3d"), ("Sr", "1b"), ("Ti", "1a")) in as_sets
    dof = {w.label: w.dof for w in wyckoff_positions(221)}
    for a in found:  # fixed positions at most once, and every assignment builds
        fixed = [lab for _, lab in a if dof[lab] == 0]
        assert len(fixed) == len(set(fixed))
        assert build_template(221, a).num_atoms == 5


def _brute_force(sg, composition):
    """Every way to give each element a multiset of positions (bounded), filtered by the rules."""
    wps = wyckoff_positions(sg)
    per_el = {}
    for el, n in composition.items():
        options = set()
        for k in range(1, n + 1):
            for combo in itertools.combinations_with_replacement(range(len(wps)), k):
                if sum(wps[i].multiplicity for i in combo) == n:
                    options.add(combo)
        per_el[el] = sorted(options)
    out = set()
    for choice in itertools.product(*per_el.values()):
        fixed = Counter(i for combo in choice for i in combo if wps[i].dof == 0)
        if all(v == 1 for v in fixed.values()):
            out.add(tuple((el, tuple(sorted(wps[i].label for i in combo))) for el, combo in zip(composition, choice)))
    return out


@pytest.mark.parametrize("sg, comp", [(221, {"Sr": 1, "Ti": 1, "O": 3}), (62, {"Ca": 4, "Ti": 4, "O": 12}),
                                      (14, {"Si": 4, "O": 8}), (194, {"C": 4}), (166, {"Li": 3, "Co": 3, "O": 6}),
                                      (225, {"Na": 4, "Cl": 4})])
def test_matches_brute_force(sg, comp):
    ours = {tuple((el, tuple(sorted(lab for e, lab in a if e == el))) for el in comp) for a in wyckoff_assignments(sg, comp)}
    assert ours == _brute_force(sg, comp)


def test_formula_unit_multiples():
    assert formula_unit_multiples(221, {"Sr": 1, "Ti": 1, "O": 3}, max_atoms=10) == [1]
    # NaCl in Fm-3m: the smallest orbits have 4 atoms, so Z must be a multiple of 4
    assert formula_unit_multiples(225, {"Na": 1, "Cl": 1}, max_atoms=20) == [4, 8]
    assert wyckoff_assignments(225, {"Na": 1, "Cl": 1}) == []
    with pytest.raises(ValueError, match="count"):
        wyckoff_assignments(221, {"Na": 0})
    with pytest.raises(ValueError, match="space group"):
        wyckoff_assignments(0, {"Na": 1})


def _spglib_ops(sg, sites, seed=3):
    """spglib's (group, operations) of one generic realisation of an assignment (random free
    coordinates, a generic lattice of the family), built independently of realizes_space_group."""
    import numpy as np
    import spglib

    from diffcsp_pp.symmetry import lattice_from_params

    t = build_template(sg, sites)
    rng = np.random.default_rng(seed)
    lengths = {194: [4.1, 4.1, 11.3], 225: [5.3, 5.3, 5.3]}[sg]
    angles = {194: [90.0, 90.0, 120.0], 225: [90.0, 90.0, 90.0]}[sg]
    cell = (lattice_from_params(np.array(lengths), np.array(angles)), t.random_frac_coords(rng), t.atom_types)
    return spglib.get_symmetry_dataset(cell, symprec=1e-3)


def test_assignments_that_always_have_more_symmetry():
    """MoS2 as Mo:2a S:2c S:2d in P6_3/mmc (what the default model once returned as P6/mmm) is
    invariant under the pure translation (0, 0, 1/2) whatever the lattice: spglib finds it on an
    independent realisation, and realizes_space_group rejects the assignment; Pt on 4a + 4b of
    Fm-3m is simple cubic. The known 2H-MoS2 assignment (Mo:2c S:4f) and rock salt are kept."""
    import numpy as np

    from diffcsp_pp.symmetry.enumerate import realizes_space_group

    bad = [("Mo", "2a"), ("S", "2c"), ("S", "2d")]
    ds = _spglib_ops(194, bad)
    assert ds.number == 191
    pure = [tr % 1 for rot, tr in zip(ds.rotations, ds.translations) if (rot == np.eye(3)).all()]
    assert any(np.allclose(tr, [0, 0, 0.5], atol=1e-6) for tr in pure)
    assert not realizes_space_group(194, bad)
    assert not realizes_space_group(194, [("Mo", "2a"), ("S", "4e")])  # all on the c axis: (0, 0, 1/2) again
    assert _spglib_ops(225, [("Pt", "4a"), ("Pt", "4b")]).number == 221
    assert not realizes_space_group(225, [("Pt", "4a"), ("Pt", "4b")])
    for sg, good in [(194, [("Mo", "2c"), ("S", "4f")]), (194, [("Mo", "2a"), ("S", "2c"), ("Se", "2d")]),
                     (225, [("Na", "4a"), ("Cl", "4b")])]:
        assert _spglib_ops(sg, good).number == sg
        assert realizes_space_group(sg, good)
