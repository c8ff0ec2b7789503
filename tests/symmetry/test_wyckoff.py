"""Wyckoff tables against spglib's symmetry operations, and the orbit operators' properties."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
import torch

from diffcsp_pp.symmetry import (
    build_template,
    expand_orbits,
    hall_number,
    orbit_mean,
    project_noise,
    pull_back,
    push_forward,
    rotation_pinv,
    wrap_diff,
    wyckoff_position,
    wyckoff_positions,
)

#: groups with two origin choices; our tables (pyxtal) use origin choice 2
ORIGIN_CHOICE_2 = {48, 50, 59, 68, 70, 85, 86, 88, 125, 126, 129, 130, 133, 134, 137, 138, 141, 142,
                   201, 203, 222, 224, 227, 228}


def _unique_mod1(points: np.ndarray) -> np.ndarray:
    keep = []
    for p in points % 1.0:
        if not any(np.max(np.abs(wrap_diff(p, q))) < 1e-8 for q in keep):
            keep.append(p)
    return np.array(keep)


def test_table_size_and_hall_numbers():
    positions = [wp for sg in range(1, 231) for wp in wyckoff_positions(sg)]
    assert len(positions) == 1731  # International Tables, standard settings
    for sg in range(1, 231):
        default = min(h for h in range(1, 531) if spglib.get_spacegroup_type(h).number == sg)
        assert (hall_number(sg) != default) == (sg in ORIGIN_CHOICE_2), sg
    assert hall_number(227) == 526


def test_stored_table_is_pyxtals():
    """The package reads wyckoff_table.npz (scripts/build_wyckoff_table.py) instead of importing
    pyxtal: every group's positions, letters, multiplicities, site symmetries and operations must
    be the installed pyxtal's (after a pyxtal upgrade that changes them, rerun the script)."""
    from pyxtal.symmetry import Group

    for sg in range(1, 231):
        ours = wyckoff_positions(sg)
        theirs = list(Group(sg))
        assert [wp.letter for wp in ours] == [wp.letter for wp in theirs], sg
        for mine, wp in zip(ours, theirs, strict=True):
            assert mine.multiplicity == wp.multiplicity
            np.testing.assert_allclose(mine.ops, np.stack([op.affine_matrix for op in wp.ops]), rtol=0, atol=1e-12)
            wp.get_site_symmetry()
            assert mine.site_symmetry == str(wp.site_symm), (sg, wp.letter)


def test_predict_starts_without_pyxtal_or_matminer():
    """Start-up: the sampling path imports neither pyxtal (≈1.2 s) nor matminer (≈0.6 s)."""
    import subprocess
    import sys

    code = ("import sys; from diffcsp_pp.symmetry import wyckoff_positions; from diffcsp_pp.retrieval.substitution "
            "import element_table; wyckoff_positions(227); element_table(); import diffcsp_pp.api; "
            "print(sorted(m for m in ('pyxtal', 'matminer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("sg", range(1, 231))
def test_positions_agree_with_spglib_operations(sg):
    """Every position: anchor op is an idempotent projector, and its ops generate exactly the orbit
    that spglib's space-group operations (same setting) generate from a point on it."""
    sym = spglib.get_symmetry_from_database(hall_number(sg))
    rng = np.random.default_rng(sg)
    for wp in wyckoff_positions(sg):
        rot0, t0 = wp.ops[0, :3, :3], wp.ops[0, :3, 3]
        np.testing.assert_allclose(rot0 @ rot0, rot0, atol=1e-12)
        np.testing.assert_allclose(rot0 @ t0, 0, atol=1e-12)
        assert wp.ops.shape == (wp.multiplicity, 4, 4)
        u = (rot0 @ rng.random(3) + t0) % 1.0
        ours = (wp.ops[:, :3, :3] @ u + wp.ops[:, :3, 3]) % 1.0
        theirs = _unique_mod1(np.einsum("nij,j->ni", sym["rotations"], u) + sym["translations"])
        assert len(_unique_mod1(ours)) == wp.multiplicity == len(theirs), (sg, wp.label)
        dist = np.abs(wrap_diff(ours[:, None, :], theirs[None, :, :])).max(-1)
        assert np.all(dist.min(1) < 1e-8), (sg, wp.label)


def test_lookup_errors():
    assert wyckoff_position(225, "4a").letter == "a"
    assert wyckoff_position(225, "a").multiplicity == 4
    with pytest.raises(ValueError, match="no Wyckoff position"):
        wyckoff_position(225, "z")
    with pytest.raises(ValueError, match="multiplicity 4"):
        wyckoff_position(225, "8a")


def _random_template(rng):
    """A template with special and general positions in a few groups."""
    choices = [
        (221, [("Sr", "a"), ("Ti", "b"), ("O", "c")]),
        (227, [("Mg", "a"), ("Al", "d"), ("O", "e")]),
        (166, [("Li", "a"), ("Co", "b"), ("O", "c")]),
        (62, [("Ca", "c"), ("Ti", "b"), ("O", "c"), ("O", "d")]),
        (14, [("Si", "e"), ("O", "e"), ("O", "a")]),
        (194, [("C", "c"), ("N", "i"), ("B", "k")]),
    ]
    sg, sites = choices[rng.integers(len(choices))]
    return build_template(sg, sites)


@pytest.mark.parametrize("seed", range(12))
def test_expand_and_noise_projection_keep_orbits(seed):
    rng = np.random.default_rng(seed)
    t = _random_template(rng)
    x = t.random_frac_coords(rng)
    np.testing.assert_allclose(np.abs(wrap_diff(expand_orbits(x, t.wyckoff_ops, t.anchor_idx), x)).max(), 0, atol=1e-12)
    pinv = rotation_pinv(t.wyckoff_ops)
    eps = project_noise(rng.normal(size=x.shape), t.wyckoff_ops, t.anchor_idx, pinv)
    noisy = (x + 0.05 * eps) % 1.0
    again = expand_orbits(noisy, t.wyckoff_ops, t.anchor_idx)
    assert np.abs(wrap_diff(again, noisy)).max() < 1e-12
    # at the anchors the projection is the orthogonal projector onto the free directions
    anchors = np.unique(t.anchor_idx)
    proj = t.wyckoff_ops[anchors, :3, :3] @ pinv[anchors]
    np.testing.assert_allclose(proj, proj.transpose(0, 2, 1), atol=1e-12)
    np.testing.assert_allclose(proj @ proj, proj, atol=1e-12)


def test_noise_of_x_x_0_position_has_half_variance_per_parameter():
    """METHOD §3.2 example: for (x, x, 0) the free parameter gets variance 1/2."""
    t = build_template(123, [("O", "j")])  # 4j: x, x, 0 in P4/mmm
    assert np.allclose(t.wyckoff_ops[0, :3, :3], [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    rng = np.random.default_rng(0)
    n = 40000
    ops = np.repeat(t.wyckoff_ops[:1], n, axis=0)
    eps = project_noise(rng.normal(size=(n, 3)), ops, np.arange(n), rotation_pinv(ops))
    assert np.var(eps[:, 0]) == pytest.approx(0.5, rel=0.03)
    np.testing.assert_allclose(eps[:, 0], eps[:, 1])
    assert np.all(eps[:, 2] == 0)


def test_orbit_mean_pull_back_push_forward_against_loops(rng):
    t = build_template(227, [("Mg", "a"), ("O", "e"), ("Si", "i")])
    n = t.num_atoms
    v = rng.normal(size=(n, 3))
    mean = orbit_mean(v, t.anchor_idx)
    for a in np.unique(t.anchor_idx):
        members = t.anchor_idx == a
        np.testing.assert_allclose(mean[members], np.broadcast_to(v[members].mean(0), (members.sum(), 3)))
    pinv = rotation_pinv(t.wyckoff_ops)
    for i in range(n):
        rot = t.wyckoff_ops[i, :3, :3]
        np.testing.assert_allclose(pull_back(v, pinv)[i], np.linalg.pinv(rot) @ v[i], atol=1e-12)
        np.testing.assert_allclose(push_forward(v, t.wyckoff_ops)[i], rot @ v[i], atol=1e-12)
    # push-forward of the orbit-mean of pulled-back anchor-space params regenerates a consistent orbit
    x = t.random_frac_coords(rng)
    shift = push_forward(orbit_mean(pull_back(v, pinv), t.anchor_idx), t.wyckoff_ops)
    moved = (x + 0.01 * shift) % 1.0
    assert np.abs(wrap_diff(expand_orbits(moved, t.wyckoff_ops, t.anchor_idx), moved)).max() < 1e-12


def test_torch_matches_numpy(rng):
    t = build_template(166, [("Li", "a"), ("Co", "b"), ("O", "c"), ("F", "h")])
    x = t.random_frac_coords(rng)
    eps = rng.normal(size=x.shape)
    pinv = rotation_pinv(t.wyckoff_ops)
    tt = {k: torch.from_numpy(np.array(v)) for k, v in
          dict(x=x, eps=eps, ops=t.wyckoff_ops, anchors=t.anchor_idx, pinv=pinv).items()}
    np.testing.assert_allclose(rotation_pinv(tt["ops"]).numpy(), pinv, atol=1e-12)
    np.testing.assert_allclose(expand_orbits(tt["x"], tt["ops"], tt["anchors"]).numpy(),
                               expand_orbits(x, t.wyckoff_ops, t.anchor_idx), atol=1e-12)
    np.testing.assert_allclose(project_noise(tt["eps"], tt["ops"], tt["anchors"], tt["pinv"]).numpy(),
                               project_noise(eps, t.wyckoff_ops, t.anchor_idx, pinv), atol=1e-12)
    np.testing.assert_allclose(orbit_mean(tt["eps"], tt["anchors"]).numpy(), orbit_mean(eps, t.anchor_idx), atol=1e-12)
    np.testing.assert_allclose(pull_back(tt["eps"], tt["pinv"]).numpy(), pull_back(eps, pinv), atol=1e-12)


def test_noised_crystal_keeps_space_group(rng):
    """Small Wyckoff-projected noise on a real template keeps (at least) the space group in spglib."""
    from diffcsp_pp.symmetry import lattice_from_k, project_k

    t = build_template(62, [("Ca", "c"), ("Ti", "b"), ("O", "c"), ("O", "d")])
    lattice = lattice_from_k(project_k(np.array([0, 0, 0, 0.1, -0.05, 2.9]), 62))
    x = t.random_frac_coords(rng)
    pinv = rotation_pinv(t.wyckoff_ops)
    for sigma in (1e-3, 1e-2, 5e-2):
        noisy = (x + sigma * project_noise(rng.normal(size=x.shape), t.wyckoff_ops, t.anchor_idx, pinv)) % 1.0
        ds = spglib.get_symmetry_dataset((lattice, noisy, t.atom_types), symprec=1e-4)
        assert ds.number == 62


def test_centering_translations_are_spglibs_pure_translations():
    """Independent check on all 230 groups: the pure translations read from our table are those of
    spglib's operations in the same setting, and their number is the lattice letter's (P 1, A/B/C/I
    2, R 3, F 4)."""
    from diffcsp_pp.symmetry.wyckoff import centering_translations, hall_number

    per_letter = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
    for sg in range(1, 231):
        ours = centering_translations(sg)
        sym = spglib.get_symmetry_from_database(hall_number(sg))
        pure = sym["translations"][(sym["rotations"] == np.eye(3, dtype=int)).all(axis=(1, 2))] % 1.0
        assert sorted(map(tuple, np.round(ours, 6))) == sorted(map(tuple, np.round(pure, 6))), sg
        assert np.abs(ours[0]).max() == 0
        letter = spglib.get_spacegroup_type(hall_number(sg)).international_short[0]
        assert len(ours) == per_letter[letter], sg


def test_translation_partners_move_atoms_by_the_centring_vectors():
    """On real crystals (the MP-20 fixture) and random symmetric configurations: the partner of atom
    i for translation s sits at x_i + s (mod 1), each crystal of a centred group is reducible, and
    a crystal whose ops are broken is reported as not reducible."""
    from diffcsp_pp.symmetry import analyze
    from diffcsp_pp.symmetry.wyckoff import centering_translations, translation_partners, wrap_diff
    from tests.conftest import load_fixture_structures

    infos = [analyze(s, 0.1, structure_id=m) for m, s in load_fixture_structures("mp_20_pilot_train.csv.gz")[:30]]
    sizes = np.array([i.num_atoms for i in infos])
    offsets = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    crystal = np.repeat(np.arange(len(infos)), sizes)
    ops = np.concatenate([i.wyckoff_ops for i in infos])
    anchors = np.concatenate([i.anchor_idx for i in infos]) + offsets[crystal]
    groups = np.array([i.space_group for i in infos])
    partners, counts = translation_partners(ops, anchors, crystal, groups)
    expected = np.array([len(centering_translations(g)) for g in groups])
    assert (counts == expected).all() and (expected > 1).sum() >= 10
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = expand_orbits(rng.random((len(crystal), 3)), ops, anchors)
        for k in range(1, 4):
            rows = np.flatnonzero(counts[crystal] > k)
            shift = np.stack([centering_translations(g)[k] for g in groups[crystal[rows]]])
            assert abs(wrap_diff(x[partners[rows, k]], x[rows] + shift)).max() < 1e-9
            assert (crystal[partners[rows, k]] == crystal[rows]).all()
    assert (partners[counts[crystal] == 1, 1:] == -1).all()
    # a centred crystal with one atom's translation altered has no complete partner table
    c = int(np.flatnonzero(expected > 1)[0])
    broken = ops.copy()
    broken[offsets[c] + 1, :3, 3] += 1 / 24
    partners_b, counts_b = translation_partners(broken, anchors, crystal, groups)
    assert counts_b[c] == 1 and (partners_b[crystal == c, 1:] == -1).all()
    assert (np.delete(counts_b, c) == np.delete(counts, c)).all()
