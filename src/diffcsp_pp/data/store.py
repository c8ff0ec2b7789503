"""On-disk format of preprocessed crystals: one ``.npz`` of concatenated arrays, no pickle.

Per crystal: ``num_atoms``, ``num_orbits``, ``space_group``, ``k`` [6], ``row`` (input row),
``material_id``. Per atom (concatenated): ``frac_coords`` [3], ``atom_types``, ``wyckoff_ops`` [4, 4],
``anchor_idx`` (local to its crystal). Per orbit: ``wyckoff_letters``. Strings are fixed-width
unicode arrays, so the file loads with ``allow_pickle=False``. Files are written atomically.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from ..symmetry.analyze import SymmetryInfo
from ..symmetry.templates import _symbol

FORMAT_VERSION = 1


def save_records(path: str | os.PathLike, infos: Sequence[SymmetryInfo], rows: Sequence[int]) -> None:
    """Write analysed crystals (and their input row numbers) to ``path`` atomically."""
    path = Path(path)
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "num_atoms": np.array([i.num_atoms for i in infos], dtype=np.int64),
        "num_orbits": np.array([i.num_orbits for i in infos], dtype=np.int64),
        "space_group": np.array([i.space_group for i in infos], dtype=np.int64),
        "symprec": np.array([i.symprec for i in infos], dtype=np.float64),
        "k": np.array([i.k for i in infos], dtype=np.float64).reshape(-1, 6),
        "row": np.asarray(rows, dtype=np.int64),
        "material_id": np.array([i.structure_id or "" for i in infos], dtype=str),
        "wyckoff_letters": np.array([w for i in infos for w in i.wyckoff_letters], dtype=str),
    }
    if infos:
        arrays["frac_coords"] = np.concatenate([i.frac_coords for i in infos])
        arrays["atom_types"] = np.concatenate([i.atom_types for i in infos]).astype(np.int16)
        arrays["wyckoff_ops"] = np.concatenate([i.wyckoff_ops for i in infos])
        arrays["anchor_idx"] = np.concatenate([i.anchor_idx for i in infos]).astype(np.int32)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_records(path: str | os.PathLike) -> list[SymmetryInfo]:
    """Read crystals written by :func:`save_records` (never unpickles)."""
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read preprocessed file {path}: {err}") from None
    if int(data.get("format_version", -1)) != FORMAT_VERSION:
        raise DataError(f"{path} has format {data.get('format_version')}, expected {FORMAT_VERSION}")
    n_atoms, n_orbits = data["num_atoms"], data["num_orbits"]
    atom_end, orbit_end = np.cumsum(n_atoms), np.cumsum(n_orbits)
    infos = []
    for b in range(n_atoms.shape[0]):
        a0, a1 = atom_end[b] - n_atoms[b], atom_end[b]
        o0, o1 = orbit_end[b] - n_orbits[b], orbit_end[b]
        types = data["atom_types"][a0:a1].astype(np.int64)
        anchors = data["anchor_idx"][a0:a1].astype(np.int64)
        infos.append(
            SymmetryInfo(
                space_group=int(data["space_group"][b]),
                wyckoff_letters=[str(w) for w in data["wyckoff_letters"][o0:o1]],
                species=[_symbol(z) for z in types[np.unique(anchors)]],
                atom_types=types,
                wyckoff_ops=data["wyckoff_ops"][a0:a1],
                anchor_idx=anchors,
                k=data["k"][b],
                frac_coords=data["frac_coords"][a0:a1],
                structure_id=str(data["material_id"][b]) or None,
                symprec=float(data["symprec"][b]),
            )
        )
    return infos


def is_readable(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete preprocessed file of this format (every array read, so a
    truncated or corrupt cache entry is caught before it is used)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False
    return int(arrays.get("format_version", -1)) == FORMAT_VERSION and "row" in arrays


def load_rows(path: str | os.PathLike) -> np.ndarray:
    """Input row numbers of the crystals in a preprocessed file."""
    with np.load(path, allow_pickle=False) as data:
        return data["row"]
