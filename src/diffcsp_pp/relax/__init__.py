"""Symmetry-preserving relaxation and energy ranking with universal interatomic potentials.

    from diffcsp_pp.relax import relax_structures, RelaxSettings
    results = relax_structures(structures, potential="chgnet", settings=RelaxSettings(fmax=0.05))
    relaxed = [r.structure for r in results]          # same space group, spglib-checked

See :mod:`.engine` for the method and :mod:`.potentials` for the potentials.
"""

from .engine import (
    STATUSES,
    RelaxError,
    RelaxResult,
    RelaxSettings,
    rank_by_energy,
    relax_structures,
    requested_group,
    single_point_energies,
)
from .inputs import read_structures
from .pipeline import RelaxingWriter, relax_and_rank
from .potentials import DEFAULT_POTENTIAL, POTENTIALS, Potential, load_potential

__all__ = [
    "DEFAULT_POTENTIAL", "POTENTIALS", "STATUSES", "Potential", "RelaxError", "RelaxResult", "RelaxSettings",
    "RelaxingWriter", "load_potential", "rank_by_energy", "read_structures", "relax_and_rank", "relax_structures", "requested_group", "single_point_energies",
]
