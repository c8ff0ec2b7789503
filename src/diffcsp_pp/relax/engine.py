"""Relaxation of crystals with a universal potential that keeps their space group exactly.

Each crystal becomes an ``ase.Atoms`` with ASE's ``FixSymmetry`` constraint (which symmetrises the
starting cell at ``symprec`` and then projects every force, stress, position step and cell step onto
the symmetric subspace), wrapped in a cell filter (``FrechetCellFilter`` by default: cell and
positions relax together, the cell degrees of freedom being the log of the deformation) and driven
by an ASE optimizer (BFGS by default). Converged when the largest force on an atom is below
``fmax`` (eV/Å) and the largest stress component below ``max_stress`` (GPa).

Many crystals relax **in lockstep**: at every step the potential evaluates up to ``batch_size``
running crystals in one call (one batched forward pass for CHGNet, :mod:`.potentials`), each
optimizer then takes its own step from those cached results, and a finished crystal's place goes
to the next one waiting. The optimizers are independent (the trajectories are those of one crystal
at a time); only the potential's calls are shared. On a CPU this buys little (docs/BENCHMARKS.md
§12: CHGNet's cost grows with the atoms, batched or not); on a GPU it is what fills the device.

Every relaxed crystal is checked at the end: spglib (at the project's output tolerance,
``WRITE_SYMPREC`` = 1e-3 Å) must find the requested space group (``properties["space_group"]``
where the input carries one, else the input's group at ``symprec``); its volume must stay within
``max_volume_ratio`` of the start and no two atoms may come closer than ``min_distance``; the energy
must stay finite. A crystal that fails a check keeps its **unrelaxed** structure, and its result
says why (``status``). One that runs out of steps keeps its last (symmetric, lower-energy) structure
with ``status="not_converged"``.

Energies are per atom (eV/atom), forces eV/Å, stresses GPa.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from ase.units import GPa

from .potentials import Potential, load_potential

#: scipy's warning about a matrix logarithm's accuracy, when its estimate is below 1e-6 (matched
#: from the start of the message, as ``warnings.filterwarnings`` does)
LOGM_NOISE = r"logm result may be inaccurate, approximate err = [0-9.]+e-(0?[7-9]|[1-9][0-9]+)$"

#: Statuses of a relaxation. The first two return the relaxed structure, the others the input.
STATUSES = ("converged", "not_converged", "diverged", "exploded", "lost_group", "failed")
OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
CELL_FILTERS = ("frechet", "exp")


class RelaxError(ValueError):
    """A relaxation did not succeed and the caller asked for strictness (one readable line)."""


@dataclass(frozen=True)
class RelaxSettings:
    """Named settings of a relaxation (units: eV/Å, Å)."""

    #: convergence: largest force on an atom (eV/Å) ...
    fmax: float = 0.05
    #: ... and largest |stress component| (GPa). The cell filter's own measure (virial / number of
    #: atoms) would let a soft crystal stop ~1 % off in volume, so the stress is checked on its own
    max_stress: float = 0.05
    #: optimizer steps at most; a crystal still above ``fmax`` then is ``not_converged``
    max_steps: int = 300
    #: Å: tolerance with which FixSymmetry finds (and imposes) the starting symmetry, and with which
    #: the group of an input that names none is detected. 1e-3 Å suits this package's outputs
    #: (exact by construction); experimental CIFs with rounded coordinates may need 0.01-0.1
    symprec: float = 1e-3
    #: BFGS: half the steps of FIRE to the same energies on MP-20 crystals (docs/BENCHMARKS.md §12)
    optimizer: str = "BFGS"
    cell_filter: str = "frechet"
    #: a final volume more than this factor away from the start counts as an exploded cell
    max_volume_ratio: float = 2.0
    #: Å: two atoms closer than this in the result count as a collapsed (exploded) cell
    min_distance: float = 0.5

    def __post_init__(self):
        for name in ("fmax", "max_stress", "symprec", "min_distance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative integer, got {self.max_steps!r}")
        if not (isinstance(self.max_volume_ratio, (int, float)) and self.max_volume_ratio > 1):
            raise ValueError(f"max_volume_ratio must be > 1, got {self.max_volume_ratio!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.cell_filter not in CELL_FILTERS:
            raise ValueError(f"cell_filter must be one of {', '.join(CELL_FILTERS)}, got {self.cell_filter!r}")


@dataclass
class RelaxResult:
    """Outcome of one relaxation. ``structure`` is the relaxed crystal (statuses ``converged`` and
    ``not_converged``) or the unrelaxed input (any other status); its ``properties["relax"]`` is
    :meth:`provenance` and ``properties["energy_per_atom"]`` the energy of the structure returned."""

    structure: object
    status: str
    potential: str
    requested_space_group: int
    detected_space_group: int | None = None
    energy_before: float | None = None  # eV/atom, the (symmetrised) input
    energy_after: float | None = None  # eV/atom, the last relaxation step (None if it never ran)
    max_force_before: float | None = None  # eV/Å, largest atomic force
    max_force_after: float | None = None
    max_stress_after: float | None = None  # GPa, largest |component| of the stress
    steps: int = 0
    seconds: float = 0.0
    message: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def relaxed(self) -> bool:
        """Whether ``structure`` is the relaxed crystal (else the unrelaxed input)."""
        return self.status in ("converged", "not_converged")

    @property
    def energy_per_atom(self) -> float | None:
        """Energy (eV/atom) of the structure returned: after relaxation, or before when it was kept."""
        return self.energy_after if self.relaxed else self.energy_before

    def provenance(self) -> dict:
        """JSON-ready record (rounded) for ``Structure.properties`` and manifests."""

        def r(v, nd):
            return None if v is None or not math.isfinite(v) else round(float(v), nd)

        return {"potential": self.potential, "status": self.status, "relaxed": self.relaxed,
                "energy_before": r(self.energy_before, 6), "energy_after": r(self.energy_after, 6),
                "max_force_before": r(self.max_force_before, 5), "max_force_after": r(self.max_force_after, 5),
                "max_stress_after": r(self.max_stress_after, 5), "steps": self.steps,
                "seconds": r(self.seconds, 3), "requested_space_group": self.requested_space_group,
                "detected_space_group": self.detected_space_group, "message": self.message,
                "settings": self.settings}


# --------------------------------------------------------------------------------- helpers
def requested_group(structure, symprec: float) -> int:
    """The space group a relaxation must keep: ``properties["space_group"]`` where the structure
    carries one (this package's outputs), else spglib's group at ``symprec`` (0 if none)."""
    from ..symmetry.analyze import detect_space_group

    sg = (structure.properties or {}).get("space_group")
    try:
        sg = int(sg)
    except (TypeError, ValueError):
        sg = 0
    return sg if 1 <= sg <= 230 else detect_space_group(structure, symprec)


@contextlib.contextmanager
def _spglib_error_mode_kept():
    """Undo ASE's change of spglib's error mode: ASE's symmetry helpers (FixSymmetry) set
    ``SPGLIB_OLD_ERROR_HANDLING=false`` for their spglib calls and leave it set when it was unset
    before (ase 3.2x ``spglib_new_errorhandling``), after which every later spglib call in the
    process raises instead of returning None — our symmetry code included."""
    key = "SPGLIB_OLD_ERROR_HANDLING"
    before = os.environ.get(key)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _to_atoms(structure):
    from ase import Atoms

    return Atoms(numbers=[site.specie.Z for site in structure], positions=structure.cart_coords,
                 cell=structure.lattice.matrix, pbc=True)


def _to_structure(atoms, properties: dict):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(np.asarray(atoms.cell[:])), atoms.numbers, atoms.positions, coords_are_cartesian=True,
                     properties=properties)


def _max_norm(vectors) -> float:
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    return float(np.sqrt((v**2).sum(axis=1)).max()) if len(v) else 0.0


def _make_cached_calculator(potential: Potential):
    """An ASE calculator that serves results stored for the current state (the lockstep driver puts
    them there) and falls back to evaluating the potential for any other state."""
    from ase.calculators.calculator import Calculator, all_changes

    class _Cached(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def store(self, atoms, result: dict) -> None:
            self.atoms = atoms.copy()
            self.results = {**result, "free_energy": result["energy"]}

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            result = potential.evaluate([self.atoms])[0]
            if result is None:
                raise RuntimeError("the potential could not evaluate this cell")
            self.results = {**result, "free_energy": result["energy"]}

    return _Cached()


class _Job:
    """One crystal's relaxation state: atoms with FixSymmetry, cell filter, optimizer."""

    def __init__(self, structure, potential: Potential, settings: RelaxSettings):
        self.input, self.settings, self.potential = structure, settings, potential
        self.requested = requested_group(structure, settings.symprec)
        self.status: str | None = None
        self.message = ""
        self.steps, self.seconds = 0, 0.0
        self.e0 = self.e = self.f0 = self.f = self.s = None
        if not structure.is_ordered:
            self._stop("failed", "disordered structure (partial occupancies): nothing to relax")
            return
        from ase import optimize
        from ase.constraints import FixSymmetry
        from ase.filters import ExpCellFilter, FrechetCellFilter

        self.atoms = _to_atoms(structure)
        try:
            with _spglib_error_mode_kept():
                self.atoms.set_constraint(FixSymmetry(self.atoms, symprec=settings.symprec))
        except Exception as err:  # noqa: BLE001 - spglib could not find the ops
            self._stop("failed", f"FixSymmetry could not analyse the input: {err}")
            return
        self.atoms.calc = _make_cached_calculator(potential)
        cell_filter = FrechetCellFilter if settings.cell_filter == "frechet" else ExpCellFilter
        self.filter = cell_filter(self.atoms)
        self.opt = getattr(optimize, settings.optimizer)(self.filter, logfile=None)
        self.v0 = self.atoms.get_volume()

    def _stop(self, status: str, message: str = "") -> bool:
        self.status, self.message = status, message
        return False

    def observe(self, result: dict | None) -> bool:
        """Take the potential's result for the current state; check; step. False when finished."""
        s, step = self.settings, self.steps
        if result is None:
            return self._stop("failed", "the potential could not evaluate this cell (e.g. an isolated atom)")
        n = len(self.atoms)
        energy = result["energy"] / n
        if not (math.isfinite(energy) and np.isfinite(result["forces"]).all() and np.isfinite(result["stress"]).all()):
            return self._stop("diverged", f"non-finite energy, forces or stress at step {step}")
        self.atoms.calc.store(self.atoms, result)
        forces = self.atoms.get_forces()  # symmetrised by FixSymmetry
        self.e, self.f = energy, _max_norm(forces)
        self.s = float(np.abs(self.atoms.get_stress()).max() / GPa)
        if step == 0:
            self.e0, self.f0 = self.e, self.f
        ratio = self.atoms.get_volume() / self.v0
        if not 1 / s.max_volume_ratio <= ratio <= s.max_volume_ratio:
            return self._stop("exploded", f"volume changed by a factor {ratio:.3g} (limit {s.max_volume_ratio:g})")
        if self.f < s.fmax and self.s < s.max_stress:
            return self._stop("converged")
        if step >= s.max_steps:
            return self._stop("not_converged", f"did not converge in {s.max_steps} steps (largest force "
                                               f"{self.f:.3g} eV/Å, fmax {s.fmax:g}; largest stress "
                                               f"{self.s:.3g} GPa, max_stress {s.max_stress:g})")
        try:
            self.opt.step()
        except Exception as err:  # noqa: BLE001 - e.g. FixSymmetry refusing a huge cell step
            return self._stop("diverged", f"optimizer step {step + 1} failed: {err}")
        self.steps += 1
        return True

    def result(self) -> RelaxResult:
        from ..sample.writer import WRITE_SYMPREC
        from ..symmetry.analyze import detect_space_group

        s = self.settings
        out, detected = None, None
        if self.status in ("converged", "not_converged"):
            out = _to_structure(self.atoms, {})
            detected = detect_space_group(out, WRITE_SYMPREC)
            dmin = out.distance_matrix[np.triu_indices(len(out), 1)].min() if len(out) > 1 else np.inf
            if dmin < s.min_distance:
                self._stop("exploded", f"two atoms {dmin:.3f} Å apart (limit {s.min_distance:g} Å)")
            elif detected != self.requested:
                self._stop("lost_group", f"spglib finds space group {detected}, not {self.requested}, at "
                                         f"{WRITE_SYMPREC:g} Å after relaxation")
            elif self.e0 is not None and self.e > self.e0 + 1.0:
                self._stop("diverged", f"energy rose from {self.e0:.3f} to {self.e:.3f} eV/atom")
        res = RelaxResult(structure=None, status=self.status, potential=self.potential.name,
                          requested_space_group=self.requested, detected_space_group=detected,
                          energy_before=self.e0, energy_after=self.e, max_force_before=self.f0, max_force_after=self.f,
                          max_stress_after=self.s, steps=self.steps, seconds=self.seconds, message=self.message,
                          settings=asdict(s))
        base = self.input.copy()
        props = dict(base.properties or {})
        props.update({"relax": res.provenance(), "energy_per_atom": None if res.energy_per_atom is None
                      else round(res.energy_per_atom, 6)})
        if self.requested:
            props.setdefault("space_group", self.requested)
        if res.relaxed:
            props["detected_space_group"] = detected
            res.structure = _to_structure(self.atoms, props)
        else:
            base.properties = props
            res.structure = base
        return res


# ------------------------------------------------------------------------------------- API
def relax_structures(structures, potential=None, settings: RelaxSettings | None = None, batch_size: int = 16,
                     strict: bool = False, progress: bool = False) -> list[RelaxResult]:
    """Relax each pymatgen Structure, keeping its space group (see the module docstring).

    ``potential``: a name (``"chgnet"``, the default, ...), an ASE calculator or a
    :class:`~diffcsp_pp.relax.potentials.Potential`. ``batch_size`` crystals relax in lockstep
    (their potential evaluations batched). ``strict``: raise :class:`RelaxError` (one line, naming
    the first crystal and why) if any relaxation did not converge or was rejected, instead of
    reporting it in the results.
    """
    settings = RelaxSettings() if settings is None else settings
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    structures = list(structures)
    pot = load_potential(potential)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(structures), desc="relax", unit="crystal")
    with _spglib_error_mode_kept(), warnings.catch_warnings():
        # ASE's Fréchet cell filter takes a matrix logarithm at every step and scipy warns about its
        # accuracy estimate each time (about 1e-13 here: hundreds of lines per relaxation on stderr);
        # estimates of 1e-6 or worse still warn
        warnings.filterwarnings("ignore", message=LOGM_NOISE, category=RuntimeWarning)
        jobs = _run_rolling(structures, pot, settings, batch_size, bar)
    results = [job.result() for job in jobs]
    if bar is not None:
        bar.close()
    if strict:
        for i, r in enumerate(results):
            if r.status != "converged":
                name = (structures[i].properties or {}).get("name") or f"structure {i}"
                raise RelaxError(f"{name}: relaxation {r.status.replace('_', ' ')}: {r.message}")
    return results


def _run_rolling(structures, potential: Potential, settings: RelaxSettings, batch_size: int, bar) -> list[_Job]:
    """Relax every structure, ``batch_size`` at a time in lockstep; a finished crystal's place in
    the batch goes to the next one waiting, so batches stay full to the end."""
    jobs: list[_Job] = []
    waiting = iter(structures)
    active: list[_Job] = []
    while True:
        while len(active) < batch_size:
            s = next(waiting, None)
            if s is None:
                break
            job = _Job(s, potential, settings)
            jobs.append(job)
            if job.status is None:
                active.append(job)
            elif bar is not None:
                bar.update(1)
        if not active:
            return jobs
        t0 = time.perf_counter()
        evaluated = potential.evaluate([j.atoms for j in active])
        share = (time.perf_counter() - t0) / len(active)
        still = []
        for job, result in zip(active, evaluated, strict=True):
            t1 = time.perf_counter()
            if job.observe(result):
                still.append(job)
            elif bar is not None:
                bar.update(1)
            job.seconds += share + time.perf_counter() - t1
        active = still


def single_point_energies(structures, potential=None) -> list[float]:
    """Energy per atom (eV/atom) of each structure as it is (NaN where the potential fails); also
    stored in ``properties["energy_per_atom"]`` with the potential's name in
    ``properties["energy_potential"]``."""
    from ase import Atoms

    pot = load_potential(potential)
    atoms = [Atoms(numbers=[site.specie.Z for site in s], positions=s.cart_coords, cell=s.lattice.matrix, pbc=True)
             for s in structures]
    values = []
    for s, a, r in zip(structures, atoms, pot.evaluate(atoms), strict=True):
        e = float("nan") if r is None else r["energy"] / len(a)
        s.properties = {**(s.properties or {}), "energy_per_atom": round(e, 6) if math.isfinite(e) else None,
                        "energy_potential": pot.name}
        values.append(e)
    return values


def rank_by_energy(structures) -> list:
    """The structures ordered by ``properties["energy_per_atom"]`` (lowest first; missing or
    non-finite energies last, in their input order); each gets ``properties["energy_rank"]`` (1 = lowest)."""

    def key(item):
        e = (item[1].properties or {}).get("energy_per_atom")
        ok = e is not None and math.isfinite(e)
        return (0, e, item[0]) if ok else (1, 0.0, item[0])

    ordered = [s for _, s in sorted(enumerate(structures), key=key)]
    for i, s in enumerate(ordered):
        s.properties = {**(s.properties or {}), "energy_rank": i + 1}
    return ordered
