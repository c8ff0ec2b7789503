"""Structures to relax, read from this package's output folders or from CIF, POSCAR and extxyz files.

An output folder of ``predict`` / ``generate`` (with a ``manifest.json``) is read through
:mod:`diffcsp_pp.data.outputs`: each record's CIF, its name, and its record (requested space group,
Wyckoff assignment, seed, ...) as the structure's ``properties``, so the relaxation checks the
group that was asked for. Any other folder contributes every CIF / POSCAR / extxyz file in it (or in its ``cifs/``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

#: Manifest fields that describe a written file rather than the structure (recomputed on writing).
_FILE_FIELDS = ("name", "file", "formula", "num_atoms", "lattice", "detected_space_group", "frame", "index",
                "material_id")
_CIF = (".cif", ".mcif")
_XYZ = (".extxyz", ".xyz")
_POSCAR_SUFFIX = (".vasp", ".poscar")


def _is_poscar(path: Path) -> bool:
    return path.suffix.lower() in _POSCAR_SUFFIX or path.name.upper().startswith(("POSCAR", "CONTCAR"))


def _is_structure_file(path: Path) -> bool:
    return path.is_file() and (path.suffix.lower() in _CIF + _XYZ or _is_poscar(path))


def read_file(path: Path) -> list[tuple[str, object]]:
    """(name, Structure) of every structure in one file (several for a multi-frame extxyz)."""
    from pymatgen.core import Structure

    try:
        if path.suffix.lower() in _CIF:
            from ..data.sources import parse_cif

            return [(path.stem, parse_cif(path.read_text(errors="replace")))]
        if _is_poscar(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return [(path.stem if path.suffix else path.name, Structure.from_file(path))]
        if path.suffix.lower() in _XYZ:
            from ase.io import read
            from pymatgen.io.ase import AseAtomsAdaptor

            out = []
            for i, atoms in enumerate(read(path, index=":", format="extxyz")):
                if not atoms.pbc.all():
                    raise ValueError(f"frame {i} is not periodic in all three directions")
                s = AseAtomsAdaptor.get_structure(atoms)
                sg = atoms.info.get("space_group")
                s.properties = {"space_group": int(sg)} if sg else {}
                out.append((str(atoms.info.get("name") or f"{path.stem}_{i}"), s))
            return out
    except Exception as err:  # noqa: BLE001 - any parser failure becomes one readable line
        raise ValueError(f"cannot read a structure from {path}: {type(err).__name__}: {err}") from None
    raise ValueError(f"{path}: not a CIF, POSCAR/CONTCAR/.vasp or extxyz file")


def read_output_folder(folder: Path) -> list[tuple[str, object]]:
    """(name, Structure with its record as properties) of an output folder of this package (any
    layout, read by :mod:`diffcsp_pp.data.outputs`)."""
    from ..data import outputs
    from ..data.sources import parse_cif

    out = []
    for r in outputs.records(folder):
        s = parse_cif((folder / r["file"]).read_text(errors="replace"))
        s.properties = {k: v for k, v in r.items() if k not in _FILE_FIELDS}
        out.append((r["name"], s))
    return out


def read_structures(paths) -> list[tuple[str, object]]:
    """(name, Structure) from output folders, folders of structure files and structure files, in
    the order given; a name seen before gets a ``_2``, ``_3``... suffix."""
    from ..data import outputs

    items: list[tuple[str, object]] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
        if p.is_dir():
            if (p / outputs.MANIFEST).is_file():
                items += read_output_folder(p)
                continue
            folder = p / "cifs" if (p / "cifs").is_dir() else p
            files = sorted(f for f in folder.rglob("*") if _is_structure_file(f))
            if not files:
                raise ValueError(f"{p} holds no manifest.json and no CIF, POSCAR or extxyz file")
            for f in files:
                items += read_file(f)
        else:
            items += read_file(p)
    seen: dict[str, int] = {}
    named = []
    for name, s in items:
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}_{seen[name]}", s))
    return named
