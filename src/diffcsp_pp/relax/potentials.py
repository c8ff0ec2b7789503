"""Universal interatomic potentials behind one interface: energies, forces and stresses of many cells.

A :class:`Potential` wraps an ASE calculator (the common interface of CHGNet, MACE, MatterSim and
most others) and evaluates a list of cells. CHGNet, the default, evaluates a list as batched graphs
in one forward pass per batch (``CHGNet.predict_graph``); any other calculator is called once per
cell. Units are ASE's: energy eV (total, not per atom), forces eV/Å, stress eV/Å³ in Voigt order
(xx, yy, zz, yz, xz, xy), positive = tensile (ASE's sign).

Names (:data:`POTENTIALS`): ``chgnet`` (CHGNet 0.3.0; its weights ship inside the ``chgnet`` wheel,
so it loads offline), ``chgnet-0.2.0``, ``mace`` (MACE-MP-0 medium via ``mace-torch``; its weights
are downloaded on first use) and ``mattersim`` (MatterSim v1 1M via ``mattersim``). Or pass any
``ase.calculators.calculator.Calculator`` instance.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Potential names -> (Python package needed, pip name, short description).
POTENTIALS = {
    "chgnet": ("chgnet", "chgnet", "CHGNet 0.3.0 (default; weights ship with the chgnet package)"),
    "chgnet-0.2.0": ("chgnet", "chgnet", "CHGNet 0.2.0"),
    "mace": ("mace", "mace-torch", "MACE-MP-0 medium (weights downloaded on first use)"),
    "mattersim": ("mattersim", "mattersim", "MatterSim v1 1M"),
}
DEFAULT_POTENTIAL = "chgnet"


class Potential:
    """An ASE calculator plus a batched evaluation of many cells.

    ``name`` is what goes into provenance (e.g. ``"CHGNet 0.3.0 (chgnet 0.4.2)"``).
    """

    def __init__(self, name: str, calculator, chgnet_model=None, batch_size: int = 16):
        self.name, self.calculator, self._chgnet, self.batch_size = name, calculator, chgnet_model, batch_size

    @property
    def batched(self) -> bool:
        """Whether :meth:`evaluate` runs one forward pass per batch of cells (CHGNet) or one per cell."""
        return self._chgnet is not None

    def evaluate(self, atoms_list) -> list[dict | None]:
        """Energy (eV), forces [N, 3] (eV/Å) and Voigt stress [6] (eV/Å³) of each ``ase.Atoms``
        (constraints ignored: raw potential output). ``None`` for a cell the potential cannot
        evaluate (e.g. an atom with no neighbour within CHGNet's cutoff); the rest are still returned."""
        if not atoms_list:
            return []
        if self._chgnet is not None:
            try:
                return self._chgnet_batch(atoms_list)
            except Exception:  # noqa: BLE001 - one bad cell must not sink the batch: retry one by one
                if len(atoms_list) == 1:
                    return [None]
                return [self.evaluate([a])[0] for a in atoms_list]
        out = []
        for atoms in atoms_list:
            plain = _plain(atoms)
            plain.calc = self.calculator
            try:
                out.append({"energy": float(plain.get_potential_energy()),
                            "forces": np.asarray(plain.get_forces(), dtype=float),
                            "stress": np.asarray(plain.get_stress(voigt=True), dtype=float)})
            except Exception:  # noqa: BLE001 - reported as a failed evaluation of this cell
                out.append(None)
        return out

    def _chgnet_batch(self, atoms_list) -> list[dict]:
        from ase.units import GPa
        from pymatgen.core import Lattice, Structure

        from ase.stress import full_3x3_to_voigt_6_stress

        model = self._chgnet
        graphs = [model.graph_converter(Structure(Lattice(np.asarray(a.cell[:])), a.numbers, a.positions,
                                                  coords_are_cartesian=True))
                  for a in atoms_list]
        with warnings.catch_warnings():  # chgnet 0.4 warns about its own volume tensor on every call
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad", category=UserWarning)
            preds = model.predict_graph(graphs, task="efs", batch_size=self.batch_size)
        preds = [preds] if isinstance(preds, dict) else preds
        out = []
        for a, p in zip(atoms_list, preds, strict=True):
            # CHGNet predicts energy per atom and stress in GPa (ASE sign); ASE wants totals and eV/Å³
            out.append({"energy": float(p["e"]) * len(a),
                        "forces": np.asarray(p["f"], dtype=float),
                        "stress": full_3x3_to_voigt_6_stress(np.asarray(p["s"], dtype=float) * GPa)})
        return out


def _plain(atoms):
    """The cell and atoms of ``atoms`` without constraints or calculator."""
    from ase import Atoms

    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)


def load_potential(potential=None, batch_size: int = 16) -> Potential:
    """A :class:`Potential` from a name in :data:`POTENTIALS` (default ``chgnet``), an ASE
    calculator, or a :class:`Potential` (returned as is). ValueError naming the bad value otherwise."""
    import contextlib
    import importlib.util
    import io

    if isinstance(potential, Potential):
        return potential
    if potential is None:
        potential = DEFAULT_POTENTIAL
    if not isinstance(potential, str):
        from ase.calculators.calculator import BaseCalculator

        if not isinstance(potential, BaseCalculator):
            raise ValueError(f"potential must be a name ({', '.join(POTENTIALS)}) or an ASE calculator, "
                             f"got {type(potential).__name__}")
        return Potential(type(potential).__name__, potential)
    key = potential.strip().lower()
    if key not in POTENTIALS:
        raise ValueError(f"unknown potential {potential!r}: choose one of {', '.join(POTENTIALS)}, "
                         "or pass an ASE calculator through the Python API")
    module, pip_name, _ = POTENTIALS[key]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"potential {potential!r} needs the {pip_name} package (pip install {pip_name})")
    try:
        if key.startswith("chgnet"):
            import chgnet
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator

            version = "0.3.0" if key == "chgnet" else key.split("-", 1)[1]
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its size and device
                model = CHGNet.load(model_name=version, use_device="cpu", verbose=False)
                calc = CHGNetCalculator(model=model, use_device="cpu")
            # an atom with no neighbour within the 6 Å cutoff gets a meaningless energy (zero force,
            # zero stress: it would look converged): make it an error, i.e. a failed evaluation
            model.graph_converter.on_isolated_atoms = "error"
            return Potential(f"CHGNet {version} (chgnet {chgnet.__version__})", calc, chgnet_model=model,
                             batch_size=batch_size)
        if key == "mace":
            from mace.calculators import mace_mp

            return Potential("MACE-MP-0 medium", mace_mp(model="medium", default_dtype="float64", device="cpu"))
        from mattersim.forcefield import MatterSimCalculator

        return Potential("MatterSim v1 1M", MatterSimCalculator(device="cpu"))
    except Exception as err:  # noqa: BLE001 - e.g. weights that cannot be downloaded here
        raise ValueError(f"could not load potential {potential!r}: {type(err).__name__}: {err}") from None
