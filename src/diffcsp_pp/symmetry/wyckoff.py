"""Wyckoff positions of the 230 space groups and the orbit operators (METHOD §3).

Tables come from pyxtal (International Tables, standard settings; origin choice 2 where a group has
two; hexagonal axes for rhombohedral groups), stored in ``wyckoff_table.npz`` by
``scripts/build_wyckoff_table.py`` and checked against pyxtal in the tests. For every (space group,
letter) we keep the affine operations ``W_j = [[R_j, t_j], [0, 1]]`` (fractional, conventional
cell). The first op ``W_0`` of
every position is an idempotent projector onto the position (``R_0² = R_0``, ``R_0 t_0 = 0``;
checked for all 1731 positions in the tests), so an anchor atom's own coordinates are its free
representative: ``x_a = W_0 x_a``.

Orbit operators, each written once and used everywhere (numpy or torch, any float dtype):

- :func:`expand_orbits`  ``E(x)_i = (R_i x_{a(i)} + t_i) mod 1``
- :func:`project_noise`  ``ε̃_i = R_i R_{a(i)}⁺ ε_{a(i)}``
- :func:`pull_back`      ``p_i = R_i⁺ v_i``
- :func:`push_forward`   ``v_i = R_i p_i``
- :func:`orbit_mean`     mean over the atoms of each orbit, broadcast back to every atom;
- :func:`fixed_pair_axes` which axes of ``x_j - x_i`` the operations keep constant (and their value);
- :func:`centering_translations` / :func:`translation_partners` the pure translations of a
  centred cell and, for every atom, the atoms it is mapped to by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ._backend import segment_sum, xp
from .families import check_space_group

#: Decimal places used to compare symmetry operations' translations (exact multiples of 1/24).
_OP_DECIMALS = 6


@dataclass(frozen=True)
class WyckoffPosition:
    """One Wyckoff position of a space group in its standard setting.

    Attributes:
        space_group: 1-230.
        letter: Wyckoff letter, e.g. ``"e"``.
        multiplicity: number of atoms of one orbit in the conventional cell.
        ops: [multiplicity, 4, 4] float64 affine ops (read-only); ``ops[0]`` is the anchor op.
        dof: number of free coordinates (rank of ``R_0``), 0-3.
        site_symmetry: Hermann-Mauguin symbol of the site-symmetry group.
    """

    space_group: int
    letter: str
    multiplicity: int
    ops: np.ndarray
    dof: int
    site_symmetry: str

    @property
    def label(self) -> str:
        """Multiplicity and letter, e.g. ``"4e"``."""
        return f"{self.multiplicity}{self.letter}"


#: The Wyckoff table of the 230 groups, written from pyxtal by ``scripts/build_wyckoff_table.py``
#: (read instead of importing pyxtal, whose package import costs about 1.2 s of every start-up).
WYCKOFF_TABLE = Path(__file__).with_name("wyckoff_table.npz")


@lru_cache(maxsize=1)
def _wyckoff_table() -> dict[str, np.ndarray]:
    with np.load(WYCKOFF_TABLE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@lru_cache(maxsize=None)
def wyckoff_positions(space_group: int) -> tuple[WyckoffPosition, ...]:
    """All Wyckoff positions of a space group, general position first (pyxtal order)."""
    number = check_space_group(space_group)
    table = _wyckoff_table()
    ends = np.append(table["start"][1:], len(table["ops"]))
    positions = []
    for i in np.flatnonzero(table["group"] == number):
        ops = np.zeros((ends[i] - table["start"][i], 4, 4))
        ops[:, :3, :] = table["ops"][table["start"][i]:ends[i]] / float(table["denominator"])
        ops[:, 3, 3] = 1.0
        ops.setflags(write=False)
        positions.append(
            WyckoffPosition(
                space_group=number,
                letter=str(table["letter"][i]),
                multiplicity=int(table["multiplicity"][i]),
                ops=ops,
                dof=int(np.linalg.matrix_rank(ops[0, :3, :3])),
                site_symmetry=str(table["site_symmetry"][i]),
            )
        )
    return tuple(positions)


def wyckoff_position(space_group: int, letter: str) -> WyckoffPosition:
    """The Wyckoff position ``letter`` (``"e"`` or ``"4e"``) of a space group.

    Raises:
        ValueError: the group has no such letter, or the multiplicity prefix is wrong.
    """
    positions = wyckoff_positions(space_group)
    text = str(letter).strip()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyzA")
    bare = text[len(digits):]
    for wp in positions:
        if wp.letter == bare:
            if digits and int(digits) != wp.multiplicity:
                raise ValueError(
                    f"Wyckoff position {letter!r} of space group {space_group} has multiplicity "
                    f"{wp.multiplicity} ({wp.label}), not {digits}"
                )
            return wp
    known = " ".join(wp.label for wp in positions)
    raise ValueError(f"space group {space_group} has no Wyckoff position {letter!r} (it has: {known})")


def _op_key(rotations: np.ndarray, translations: np.ndarray) -> frozenset:
    trans = np.round(np.mod(translations, 1.0), _OP_DECIMALS) % 1.0
    return frozenset(
        (tuple(r.astype(int).ravel()), tuple(t)) for r, t in zip(rotations, trans, strict=True)
    )


@lru_cache(maxsize=1)
def _halls_by_number() -> dict[int, list[int]]:
    import spglib

    table: dict[int, list[int]] = {}
    for hall in range(1, 531):
        table.setdefault(int(spglib.get_spacegroup_type(hall).number), []).append(hall)
    return table


@lru_cache(maxsize=None)
def hall_number(space_group: int) -> int:
    """spglib Hall number of the setting in which our Wyckoff tables are written.

    Found by comparing the general-position ops of pyxtal with spglib's database, so the two
    libraries are guaranteed to agree (it differs from spglib's default only for the 24 groups with
    two origin choices, where ours is origin choice 2).
    """
    import spglib

    number = check_space_group(space_group)
    general = wyckoff_positions(number)[0].ops
    target = _op_key(general[:, :3, :3], general[:, :3, 3])
    for hall in _halls_by_number()[number]:
        sym = spglib.get_symmetry_from_database(hall)
        if _op_key(sym["rotations"], sym["translations"]) == target:
            return hall
    raise RuntimeError(f"no spglib setting matches pyxtal's space group {number}")


# --------------------------------------------------------------------------------------------
# Orbit operators. Shapes: N atoms (whole batch), anchor_idx global indices into the same rows.
# --------------------------------------------------------------------------------------------


def rotation_parts(wyckoff_ops: Any):
    """``R`` [N, 3, 3] and ``t`` [N, 3] of affine ops [N, 4, 4]."""
    return wyckoff_ops[..., :3, :3], wyckoff_ops[..., :3, 3]


def rotation_pinv(wyckoff_ops: Any):
    """Moore-Penrose pseudo-inverses ``R_i⁺`` [N, 3, 3] of the ops' linear parts."""
    return xp(wyckoff_ops).linalg.pinv(wyckoff_ops[..., :3, :3])


def _apply(mats: Any, vecs: Any):
    """Batched matrix-vector product [N, 3, 3] x [N, 3] -> [N, 3]."""
    return (mats @ vecs[..., None])[..., 0]


def expand_orbits(frac_coords: Any, wyckoff_ops: Any, anchor_idx: Any):
    """Regenerate every atom from its orbit anchor: ``(R_i x_{a(i)} + t_i) mod 1`` [N, 3].

    Only the anchor rows of ``frac_coords`` are read.
    """
    rot, trans = rotation_parts(wyckoff_ops)
    return (_apply(rot, frac_coords[anchor_idx]) + trans) % 1.0


def project_noise(noise: Any, wyckoff_ops: Any, anchor_idx: Any, rot_pinv: Any):
    """Wyckoff-consistent noise ``R_i R_{a(i)}⁺ ε_{a(i)}`` [N, 3] from per-atom draws ``ε`` [N, 3].

    Only the anchors' draws matter; for an anchor, ``R_a R_a⁺`` is the orthogonal projector onto
    the directions its Wyckoff position leaves free.
    """
    param = _apply(rot_pinv[anchor_idx], noise[anchor_idx])  # [N, 3] in anchor parameter space
    return push_forward(param, wyckoff_ops)


def pull_back(vectors: Any, rot_pinv: Any):
    """Map per-atom 3-vectors into their anchor's parameter space: ``R_i⁺ v_i`` [N, 3]."""
    return _apply(rot_pinv, vectors)


def push_forward(params: Any, wyckoff_ops: Any):
    """Map anchor-space 3-vectors to atom i: ``R_i p_i`` [N, 3]."""
    return _apply(wyckoff_ops[..., :3, :3], params)


def orbit_mean(values: Any, anchor_idx: Any):
    """Mean of ``values`` [N, D] over each orbit (atoms sharing an anchor), broadcast back [N, D]."""
    n = values.shape[0]
    sums = segment_sum(values, anchor_idx, n)  # [N, D], non-zero rows at anchors only
    counts = segment_sum(values[:, :1] * 0 + 1, anchor_idx, n)  # [N, 1]
    return sums[anchor_idx] / counts[anchor_idx]


def fixed_pair_axes(wyckoff_ops: Any, anchor_idx: Any, src: Any, dst: Any, tol: float = 1e-8):
    """Which axes of ``x_dst - x_src`` the Wyckoff operations fix, and their fixed values.

    Atom i sits at ``R_i x_{a(i)} + t_i`` (its orbit anchor's free point ``x_a``). Axis c of
    ``x_j - x_i`` is constant whatever the free points when row c of ``R_j`` and ``R_i`` is zero
    (different orbits), or when the two rows are equal (one orbit); the constant is ``t_j - t_i``
    (up to an integer, which integer Fourier frequencies do not see).

    Used by the sampler to compute the network's Fourier products of fixed differences once
    (:meth:`diffcsp_pp.model.cspnet.CSPNet.fourier_plan`).

    Returns:
        (fixed [P, 3] bool, value [P, 3]) for the pairs (src[p], dst[p]).
    """
    rot, trans = rotation_parts(wyckoff_ops)
    r_i, r_j = rot[src], rot[dst]
    same_orbit = (anchor_idx[src] == anchor_idx[dst])[:, None]
    both_zero = (abs(r_i) <= tol).all(-1) & (abs(r_j) <= tol).all(-1)
    equal_rows = (abs(r_j - r_i) <= tol).all(-1)
    fixed = xp(wyckoff_ops).where(same_orbit, equal_rows, both_zero)
    return fixed, (trans[dst] - trans[src]) * fixed


@lru_cache(maxsize=None)
def centering_translations(space_group: int) -> np.ndarray:
    """The pure translations of the conventional cell of ``space_group`` (the general position's
    operations whose linear part is the identity), the zero vector first: [c, 3] float64,
    c = 1 (P), 2 (A, B, C, I), 3 (R, hexagonal axes) or 4 (F). Read-only."""
    general = wyckoff_positions(space_group)[0].ops
    pure = general[(np.abs(general[:, :3, :3] - np.eye(3)) < 1e-9).all(axis=(1, 2)), :3, 3] % 1.0
    pure = pure[np.argsort(np.abs(pure).sum(1), kind="stable")]  # the identity (0, 0, 0) first
    pure.setflags(write=False)
    return pure


#: Translations are compared in units of 1/24 (every Wyckoff translation and centring vector is a multiple).
_TRANSLATION_UNITS = 24


def translation_partners(wyckoff_ops: np.ndarray, anchor_idx: np.ndarray, crystal: np.ndarray,
                         space_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every atom, the atoms its crystal's centring translations move it to (numpy, no loop over atoms).

    Atom i sits at ``R_i x_a + t_i`` (anchor a); its image under a pure translation s of the group
    is the atom j of the same orbit with ``R_j = R_i`` and ``t_j ≡ t_i + s`` (mod 1), so that
    ``x_j ≡ x_i + s`` for *every* value of the orbit's free point: the whole crystal is invariant
    under s at every step of training and sampling. A crystal in which some atom has no such
    partner, or two, is reported as having the identity only.

    Args:
        wyckoff_ops: [N, 4, 4] ops of all atoms; anchor_idx: [N] global anchor rows;
        crystal: [N] crystal of each atom (0..B-1); space_groups: [B].

    Returns:
        (partners [N, 4] int64: column k is the global row of atom i moved by the k-th vector of
        :func:`centering_translations` (column 0 is i itself, unused columns -1),
        counts [B] int64: how many translations each crystal uses, 1 when it is not reducible).
    """
    units = _TRANSLATION_UNITS
    n, num_crystals = len(anchor_idx), len(space_groups)
    rot = np.asarray(wyckoff_ops[:, :3, :3], dtype=np.float64)
    trans = np.asarray(wyckoff_ops[:, :3, 3], dtype=np.float64) * units
    rot_int, trans_int = np.rint(rot), np.rint(trans)
    exact = (np.abs(rot - rot_int) < 1e-6).all(axis=(1, 2)) & (np.abs(trans - trans_int) < 1e-4).all(1)
    trans_int = trans_int.astype(np.int64) % units
    groups = np.unique(space_groups)
    vectors = np.zeros((231, 4, 3), dtype=np.int64)
    counts_of_group = np.ones(231, dtype=np.int64)
    for g in groups:  # at most 230 groups
        c = centering_translations(int(g))
        vectors[g, : len(c)] = np.rint(c * units).astype(np.int64) % units
        counts_of_group[g] = len(c)
    counts = counts_of_group[space_groups]
    partners = np.full((n, 4), -1, dtype=np.int64)
    partners[:, 0] = np.arange(n)
    if n == 0 or counts.max() == 1:
        return partners, counts
    # one integer per (anchor, linear part), then one per (anchor, linear part, translation)
    _, family = np.unique(np.column_stack([anchor_idx, rot_int.reshape(n, 9).astype(np.int64)]), axis=0,
                          return_inverse=True)
    family = family.reshape(-1).astype(np.int64)

    def code(t):
        return (family * units + t[:, 0]) * units ** 2 + t[:, 1] * units + t[:, 2]

    keys = code(trans_int)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bad = np.zeros(num_crystals, dtype=bool)
    bad[crystal[~exact]] = True
    duplicate = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    bad[crystal[order[duplicate]]] = True
    atom_counts = counts[crystal]
    for k in range(1, 4):
        uses = atom_counts > k
        if not uses.any():
            continue
        wanted = code((trans_int + vectors[space_groups[crystal], k]) % units)
        pos = np.minimum(np.searchsorted(sorted_keys, wanted), n - 1)
        found = sorted_keys[pos] == wanted
        partners[uses, k] = order[pos[uses]]
        bad[crystal[uses & ~found]] = True
    bad_atoms = bad[crystal]
    partners[bad_atoms, 1:] = -1
    counts = np.where(bad, 1, counts)
    return partners, counts


def wrap_diff(a: Any, b: Any):
    """Periodic (minimum-image) difference ``a - b`` wrapped to [-0.5, 0.5) (fractional)."""
    d = a - b
    return d - xp(d).floor(d + 0.5)


__all__ = [
    "WyckoffPosition",
    "wyckoff_positions",
    "wyckoff_position",
    "hall_number",
    "rotation_parts",
    "rotation_pinv",
    "expand_orbits",
    "project_noise",
    "pull_back",
    "push_forward",
    "orbit_mean",
    "fixed_pair_axes",
    "wrap_diff",
]
