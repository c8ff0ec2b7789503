"""Structure -> SymmetryInfo: space group, conventional cell, Wyckoff orbits and k (METHOD §1.2).

We call spglib directly (no pyxtal ``from_seed``, no CrystalNN graph): one symmetry search in the
setting of our Wyckoff tables (:func:`~diffcsp_pp.symmetry.wyckoff.hall_number`) gives the
symmetrised conventional standard cell and the Wyckoff letter and orbit of every atom. For each orbit
the anchor is the atom fixed by the position's first op ``W_0``; the whole orbit is regenerated
from it with the position's ops and must reproduce spglib's cell to ``ORBIT_TOL``. The lattice is
stored as k, projected onto its family after checking the residual. Any inconsistency raises
:class:`~diffcsp_pp.errors.SymmetryError` naming the reason and the structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SymmetryError
from .constants import ANGLE_TOLERANCE, K_FAMILY_TOL, ORBIT_TOL, SYMPREC
from .families import project_k
from .lattice_k import k_from_lattice, lattice_from_k, params_from_gram, gram_from_k
from .templates import SymmetryTemplate, _symbol
from .wyckoff import expand_orbits, hall_number, wrap_diff, wyckoff_position

if TYPE_CHECKING:
    from pymatgen.core import Structure


@dataclass(frozen=True, eq=False)
class SymmetryInfo(SymmetryTemplate):
    """A crystal as space group + Wyckoff orbits + k (conventional standard cell).

    Attributes (besides those of :class:`SymmetryTemplate`):
        k: [6] float64 lattice coefficients, projected onto the space group's family.
        frac_coords: [N, 3] float64 conventional-cell fractional coordinates in [0, 1), exactly
            ``expand_orbits`` of the anchors.
        structure_id: id of the source structure (material id, file name) or None.
        symprec: spglib tolerance (Å) the analysis used.
    """

    k: np.ndarray
    frac_coords: np.ndarray
    structure_id: str | None = None
    symprec: float = SYMPREC

    @property
    def lattice(self) -> np.ndarray:
        """[3, 3] conventional lattice (rows a, b, c; Å) in pymatgen's orientation."""
        return lattice_from_k(self.k)

    @property
    def lattice_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Lengths (Å) and angles α, β, γ (degrees) of the conventional cell."""
        return params_from_gram(gram_from_k(self.k))

    @property
    def space_group_symbol(self) -> str:
        """Short Hermann-Mauguin symbol, e.g. ``"Pm-3m"``."""
        import spglib

        return spglib.get_spacegroup_type(hall_number(self.space_group)).international_short

    @property
    def anchor_coords(self) -> np.ndarray:
        """[num_orbits, 3] free representative of each orbit."""
        return self.frac_coords[np.unique(self.anchor_idx)]

    def to_structure(self) -> Structure:
        """Rebuild the conventional cell from k, the anchors' coordinates, the ops and the species."""
        from pymatgen.core import Lattice, Structure

        coords = expand_orbits(self.frac_coords, self.wyckoff_ops, self.anchor_idx)
        return Structure(Lattice(self.lattice), self.atom_species, coords)


def _structure_id(structure: Structure, structure_id: str | None) -> str | None:
    if structure_id is not None:
        return str(structure_id)
    for key in ("material_id", "id"):
        if key in structure.properties:
            return str(structure.properties[key])
    return None


def check_tolerances(symprec, angle_tolerance=ANGLE_TOLERANCE) -> None:
    """ValueError unless ``symprec`` (Å) and ``angle_tolerance`` (degrees) are positive finite
    numbers: spglib crashes the interpreter on some others (a negative or NaN symprec segfaults)."""
    for name, value in (("symprec", symprec), ("angle_tolerance", angle_tolerance)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0 < float(value) < float("inf"):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _spglib_dataset(cell, symprec: float, angle_tolerance: float, hall: int = 0):
    import spglib

    check_tolerances(symprec, angle_tolerance)
    lattice, coords = np.asarray(cell[0], dtype=float), np.asarray(cell[1], dtype=float)
    if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(coords))) or not abs(np.linalg.det(lattice)) > 1e-6:
        return None  # spglib can crash on non-finite or degenerate cells
    return spglib.get_symmetry_dataset(
        cell, symprec=symprec, angle_tolerance=angle_tolerance, hall_number=hall
    )


def structure_dataset(structure: Structure, symprec: float = SYMPREC):
    """spglib's symmetry dataset of a pymatgen Structure, or None if spglib finds none.

    Non-finite or degenerate cells give None without calling spglib (which can crash on them).
    """
    cell = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    return _spglib_dataset(cell, symprec, ANGLE_TOLERANCE)


def detect_space_group(structure: Structure, symprec: float = SYMPREC) -> int:
    """spglib space-group number of a pymatgen Structure (0 if spglib finds none)."""
    ds = structure_dataset(structure, symprec)
    return 0 if ds is None else int(ds.number)


def analyze(
    structure: Structure,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
    structure_id: str | None = None,
) -> SymmetryInfo:
    """Decompose a structure into its space group, Wyckoff orbits and k.

    Args:
        structure: an ordered pymatgen Structure (any cell, any orientation).
        symprec: spglib distance tolerance (Å).
        angle_tolerance: spglib angle tolerance (degrees).
        structure_id: id used in error messages (default: ``structure.properties["material_id"]``).

    Raises:
        SymmetryError: with ``reason`` one of ``empty``, ``disordered``, ``unknown_species``,
            ``spglib_failed``, ``unknown_letter``, ``overlapping_orbits``, ``multiplicity_mismatch``,
            ``no_anchor``, ``orbit_mismatch``, ``lattice_not_in_family``.
    """
    sid = _structure_id(structure, structure_id)
    if len(structure) == 0:
        raise SymmetryError("empty", "the structure has no sites", sid)
    if not structure.is_ordered:
        raise SymmetryError("disordered", "partial occupancies are not supported", sid)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    if np.any(numbers < 1):
        raise SymmetryError("unknown_species", "dummy species have no atomic number", sid)
    cell = (structure.lattice.matrix, structure.frac_coords, numbers)

    ds = _spglib_dataset(cell, symprec, angle_tolerance)
    if ds is None:
        import spglib

        message = spglib.get_error_message() or "no symmetry found"
        raise SymmetryError(
            "spglib_failed", f"spglib: {message} (overlapping atoms or a degenerate cell?)", sid
        )
    number = int(ds.number)
    hall = hall_number(number)
    if ds.hall_number != hall:
        ds = _spglib_dataset(cell, symprec, angle_tolerance, hall)
        if ds is None or int(ds.number) != number:
            raise SymmetryError(
                "spglib_failed", f"no dataset in the standard setting (Hall {hall}) of {number}", sid
            )

    std_lattice = np.asarray(ds.std_lattice, dtype=np.float64)
    std_pos = np.asarray(ds.std_positions, dtype=np.float64) % 1.0
    std_types = np.asarray(ds.std_types, dtype=np.int64)
    # Orbit id and Wyckoff letter of every std atom, through the primitive-cell mappings.
    n_prim = int(np.max(ds.mapping_to_primitive)) + 1
    prim_orbit = np.full(n_prim, -1, dtype=np.int64)
    prim_orbit[ds.mapping_to_primitive] = ds.crystallographic_orbits
    letters_in = np.asarray(ds.wyckoffs)
    std_orbit = prim_orbit[np.asarray(ds.std_mapping_to_primitive)]
    orbit_ids, first = np.unique(std_orbit, return_index=True)
    orbit_ids = orbit_ids[np.argsort(first)]  # orbits in order of first appearance
    tol = max(ORBIT_TOL, float(symprec))

    coords, ops, anchors, types, labels, species = [], [], [], [], [], []
    offset = 0
    for orbit in orbit_ids:
        idx = np.nonzero(std_orbit == orbit)[0]
        letter = str(letters_in[orbit])
        try:
            wp = wyckoff_position(number, letter)
        except ValueError as err:
            raise SymmetryError("unknown_letter", str(err), sid) from None
        if wp.dof == 0 and wp.label in labels:
            raise SymmetryError(
                "overlapping_orbits",
                f"two orbits sit on the fixed position {wp.label} of space group {number} "
                "(overlapping atoms)",
                sid,
            )
        if idx.size != wp.multiplicity:
            raise SymmetryError(
                "multiplicity_mismatch",
                f"orbit {wp.label} of space group {number} has {idx.size} atoms in the cell",
                sid,
            )
        x = std_pos[idx]  # [m, 3]
        rot, trans = wp.ops[:, :3, :3], wp.ops[:, :3, 3]
        # Anchor: the orbit atom fixed by W_0 (then x_a is its own free representative).
        fixed = np.linalg.norm(wrap_diff(x @ rot[0].T + trans[0], x) @ std_lattice, axis=-1)
        a = int(np.argmin(fixed))
        if fixed[a] > tol:
            raise SymmetryError(
                "no_anchor",
                f"no atom of orbit {wp.label} ({_symbol(std_types[idx[0]])}) of space group "
                f"{number} lies on the position's first op (closest {fixed[a]:.2e} Å)",
                sid,
            )
        u = (rot[0] @ x[a] + trans[0]) % 1.0
        images = (rot @ u + trans) % 1.0  # [m, 3], image j generated by op j
        dist = np.linalg.norm(wrap_diff(images[:, None, :], x[None, :, :]) @ std_lattice, axis=-1)
        match = np.argmin(dist, axis=1)
        worst = float(dist[np.arange(idx.size), match].max())
        if np.unique(match).size != idx.size or worst > tol:
            raise SymmetryError(
                "orbit_mismatch",
                f"the ops of {wp.label} in space group {number} do not regenerate the orbit "
                f"(worst {worst:.2e} Å, {np.unique(match).size}/{idx.size} atoms hit)",
                sid,
            )
        coords.append(images)
        ops.append(wp.ops)
        anchors.append(np.full(idx.size, offset, dtype=np.int64))
        types.append(std_types[idx][match])
        labels.append(wp.label)
        species.append(_symbol(std_types[idx[0]]))
        offset += idx.size

    k_raw = k_from_lattice(std_lattice)
    k = project_k(k_raw, number)
    residual = float(np.max(np.abs(k - k_raw)))
    if residual > K_FAMILY_TOL:
        raise SymmetryError(
            "lattice_not_in_family",
            f"symmetrised lattice is off its family's k subspace by {residual:.2e}",
            sid,
        )
    return SymmetryInfo(
        space_group=number,
        wyckoff_letters=labels,
        species=species,
        atom_types=np.concatenate(types),
        wyckoff_ops=np.concatenate(ops),
        anchor_idx=np.concatenate(anchors),
        k=k,
        frac_coords=np.concatenate(coords),
        structure_id=sid,
        symprec=float(symprec),
    )
