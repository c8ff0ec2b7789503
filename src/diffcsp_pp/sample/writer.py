"""Writing predictions incrementally: one symmetric CIF per structure, one extxyz, a manifest.

The manifest (``manifest.json``) is rewritten atomically after every batch, so an interrupted run
keeps every finished structure, and a rerun with the same arguments skips the names it already
lists. CIFs carry their space group (pymatgen ``CifWriter`` with ``symprec``), not P1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..atomic import write_atomic, write_json_atomic

#: spglib tolerance (Å) used to detect and write the symmetry of outputs.
WRITE_SYMPREC = 1e-3


def symmetric_cif(structure) -> tuple[str, int]:
    """(CIF text, spglib space group at WRITE_SYMPREC). The CIF carries the space group when spglib
    finds one; a degenerate structure is written in P1 rather than failing."""
    from pymatgen.io.cif import CifWriter

    from ..symmetry.analyze import detect_space_group

    detected = detect_space_group(structure, WRITE_SYMPREC)
    return str(CifWriter(structure, symprec=WRITE_SYMPREC) if detected else CifWriter(structure)), detected


class PredictionWriter:
    """Collects structures into ``out_dir`` (``cifs/``, ``structures.extxyz``, ``manifest.json``)."""

    def __init__(self, out_dir: str | os.PathLike, inputs: dict):
        self.out = Path(out_dir)
        (self.out / "cifs").mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.out / "manifest.json"
        self.entries: list[dict] = []
        if self.manifest_path.is_file():
            previous = json.loads(self.manifest_path.read_text())
            if previous.get("inputs") != inputs:
                raise ValueError(f"{self.out} holds predictions made with other arguments; choose another --out")
            self.entries = [e for e in previous.get("entries", []) if (self.out / e["file"]).is_file()]
        self.inputs = inputs

    def done(self) -> set[str]:
        return {e["name"] for e in self.entries}

    def add(self, items) -> None:
        """``items``: iterable of (name, Structure, info dict); writes them and the manifest."""
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = []
        for name, structure, info in items:
            text, detected = symmetric_cif(structure)
            path = self.out / "cifs" / f"{name}.cif"
            write_atomic(path, text)
            a = AseAtomsAdaptor.get_atoms(structure)
            a.info.update({"name": name, "space_group": int(info.get("space_group", 0)), "detected_space_group": detected})
            atoms.append(a)
            self.entries = [e for e in self.entries if e["name"] != name]  # a rewritten structure replaces its entry
            self.entries.append({"name": name, "file": f"cifs/{name}.cif", **info, "detected_space_group": detected,
                                 "formula": structure.composition.reduced_formula, "num_atoms": len(structure),
                                 "lattice": [round(float(v), 4) for v in (*structure.lattice.abc, *structure.lattice.angles)]})
        if atoms:
            write(self.out / "structures.extxyz", atoms, format="extxyz", append=True)
        self._write_manifest()

    def _write_manifest(self) -> None:
        requested = [e for e in self.entries if e.get("space_group")]
        kept = sum(e["detected_space_group"] == e["space_group"] for e in requested)
        payload = {
            "package": "diffcsp-pp", "version": __version__, "inputs": self.inputs,
            "count": len(self.entries),
            "requested_space_group_rate": (kept / len(requested)) if requested else None,
            "entries": self.entries,
        }
        write_json_atomic(self.manifest_path, payload)
