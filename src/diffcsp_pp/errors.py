"""Exceptions raised by diffcsp_pp.

Every failure of the symmetry layer raises :class:`SymmetryError` with a short machine-readable
``reason`` (used to group failures in preprocessing reports), a human-readable ``detail`` and the id
of the structure it concerns. There is never a silent fallback to P1.
"""

from __future__ import annotations


class DiffCSPError(Exception):
    """Base class of the package's own errors."""


class SymmetryError(DiffCSPError, ValueError):
    """A structure could not be decomposed into Wyckoff orbits (or rebuilt from them).

    Attributes:
        reason: short code, e.g. ``"spglib_failed"``, ``"orbit_mismatch"``, ``"disordered"``.
        detail: human-readable explanation with the offending values.
        structure_id: id of the structure (material id, file name) or ``None``.
    """

    def __init__(self, reason: str, detail: str, structure_id: str | None = None):
        self.reason = reason
        self.detail = detail
        self.structure_id = structure_id
        where = f"{structure_id}: " if structure_id else ""
        super().__init__(f"{where}{reason}: {detail}")


class DataError(DiffCSPError, ValueError):
    """An input file (CSV, CIF folder, cache) is missing, unreadable or malformed."""


class ChecksumError(DataError):
    """A dataset file does not have the checksum the registry expects."""


class CompileError(DiffCSPError, RuntimeError):
    """``torch.compile`` could not build the network (e.g. no C++ compiler): sample without it."""
