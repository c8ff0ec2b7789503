"""Reading crystals from CDVAE-format CSVs (``.csv``/``.csv.gz``, a ``cif`` column) and CIF folders."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .registry import sha256_uncompressed

CIF_SUFFIXES = (".cif", ".CIF")


@dataclass(frozen=True)
class RawCrystal:
    """One input crystal before analysis.

    Attributes:
        row: position in the input (CSV row or sorted file index).
        material_id: the CSV's ``material_id`` (else the row number) or the CIF file's stem.
        cif: CIF text.
    """

    row: int
    material_id: str
    cif: str


def is_csv(path: Path) -> bool:
    """True for ``*.csv`` and ``*.csv.gz``."""
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def read_crystals(path: str | os.PathLike) -> list[RawCrystal]:
    """All crystals of a CSV (``cif`` column) or of a folder of ``*.cif`` files.

    Raises:
        FileNotFoundError: the path does not exist.
        DataError: unreadable file, no ``cif`` column, or a folder without CIF files.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in CIF_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path} contains no .cif files")
        return [RawCrystal(i, p.stem, p.read_text(errors="replace")) for i, p in enumerate(files)]
    if is_csv(path):
        return _read_csv(path)
    if path.suffix in CIF_SUFFIXES:
        return [RawCrystal(0, path.stem, path.read_text(errors="replace"))]
    raise DataError(f"{path}: expected a .csv, .csv.gz, .cif file or a folder of .cif files")


def _read_csv(path: Path) -> list[RawCrystal]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"material_id": str})
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read {path} as CSV: {err}") from None
    if "cif" not in frame.columns:
        raise DataError(f"{path} has no 'cif' column (columns: {', '.join(map(str, frame.columns))})")
    ids = frame["material_id"] if "material_id" in frame.columns else frame.index.astype(str)
    return [
        RawCrystal(i, str(mid), str(cif))
        for i, (mid, cif) in enumerate(zip(ids, frame["cif"], strict=True))
    ]


def content_hash(path: str | os.PathLike) -> str:
    """sha256 identifying an input's content.

    A CSV hashes its uncompressed bytes (so it equals the registry checksum for official files and
    does not depend on gzip); a folder hashes the sorted names and bytes of its CIF files.
    """
    path = Path(path)
    if not path.is_dir():
        return sha256_uncompressed(path)
    digest = hashlib.sha256()
    for p in sorted(p for p in path.iterdir() if p.suffix in CIF_SUFFIXES and p.is_file()):
        digest.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()


def parse_cif(text: str):
    """A pymatgen Structure from CIF text (the first block); ValueError if it has none."""
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(text, fmt="cif")
