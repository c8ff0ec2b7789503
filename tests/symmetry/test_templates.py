"""Every Wyckoff position of every space group: a crystal built from a template has exactly that group."""

from __future__ import annotations

import numpy as np
import pytest
import spglib

from diffcsp_pp.symmetry import (
    build_template,
    lattice_from_k,
    project_k,
    wyckoff_positions,
)


def _random_lattice_of_group(sg, rng):
    k = project_k(np.concatenate([rng.normal(size=5) * 0.15, [2.6 + 0.3 * rng.random()]]), sg)
    return lattice_from_k(k)


@pytest.mark.parametrize("sg", range(1, 231))
def test_every_position_gives_exact_space_group(sg):
    """The tested position holds element Z=3; two general orbits (Z=8, Z=9) pin the whole group."""
    rng = np.random.default_rng(1000 + sg)
    general = wyckoff_positions(sg)[0].letter
    for wp in wyckoff_positions(sg):
        t = build_template(sg, [("Li", wp.letter), ("O", general), ("F", general)])
        assert t.num_atoms == wp.multiplicity + 2 * wyckoff_positions(sg)[0].multiplicity
        for _attempt in range(5):  # a random draw can put two atoms on top of each other: redraw
            lattice = _random_lattice_of_group(sg, rng)
            x = t.random_frac_coords(rng)
            ds = spglib.get_symmetry_dataset((lattice, x, t.atom_types), symprec=1e-3)
            if ds is not None and ds.number == sg:
                break
        assert ds is not None and ds.number == sg, (sg, wp.label, None if ds is None else ds.number)
        li = t.atom_types == 3
        assert len({w for w, z in zip(ds.wyckoffs, t.atom_types) if z == 3}) == 1
        # spglib sees the Li orbit with the multiplicity of the requested position
        assert li.sum() == wp.multiplicity


def test_template_fields():
    t = build_template(221, [("Sr", "1a"), ("Ti", "b"), ("O", "3c")])
    assert t.wyckoff_letters == ["1a", "1b", "3c"]
    assert t.species == ["Sr", "Ti", "O"]
    assert t.atom_species == ["Sr", "Ti", "O", "O", "O"]
    assert t.anchor_idx.tolist() == [0, 1, 2, 2, 2]
    assert t.atom_types.tolist() == [38, 22, 8, 8, 8]
    assert t.num_orbits == 3 and t.num_atoms == 5


@pytest.mark.parametrize(
    "sg, sites, match",
    [
        (221, [("Xx", "a")], "unknown element"),
        (221, [("Sr", "z")], "no Wyckoff position"),
        (221, [("Sr", "2a")], "multiplicity"),
        (221, [("Sr", "a"), ("Ti", "a")], "only one orbit"),
        (0, [("Sr", "a")], "space group"),
        (231, [("Sr", "a")], "space group"),
        (221, [], "at least one"),
        (221, [("Sr",)], "element, Wyckoff letter"),
    ],
)
def test_template_errors(sg, sites, match):
    with pytest.raises(ValueError, match=match):
        build_template(sg, sites)


def test_free_position_may_hold_several_orbits():
    t = build_template(225, [("O", "e"), ("F", "e")])
    assert t.wyckoff_letters == ["24e", "24e"] and t.num_atoms == 48
