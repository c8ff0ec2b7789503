"""Exact space-group / Wyckoff layer: k lattice, family constraints, orbits, analysis, templates."""

from .analyze import SymmetryInfo, analyze, detect_space_group
from .constants import ANGLE_TOLERANCE, K_FAMILY_TOL, ORBIT_TOL, SYMPREC
from .families import (
    HEXAGONAL_K1,
    K_BIAS,
    K_MASK,
    check_space_group,
    crystal_family,
    k_mask_bias,
    project_k,
)
from .lattice_k import (
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
from .templates import SymmetryTemplate, atomic_number, build_template
from .wyckoff import (
    WyckoffPosition,
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

__all__ = [name for name in dir() if not name.startswith("_")]
