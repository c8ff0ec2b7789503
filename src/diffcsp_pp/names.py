"""File names from untrusted strings (material ids of a user's CSV, CIF file names, formulas).

:func:`safe_output_name` is the one function every writer passes a user-supplied name through before
it becomes part of a path: its result is a single, portable path component, so a file built from it
always lands inside the folder the writer chose (no ``/``, ``\\``, ``..``, NUL, control characters,
leading dot or dash, Windows device names; bounded length).

It is pure and stable (same input, same output, on every machine and run) and keeps names that are
already safe unchanged (``mp-1234`` stays ``mp-1234``). A name it has to change gets a short hash of
the original appended, so two different unsafe ids (``a/b`` and ``a\\b``) do not collapse onto one
file. Collisions are still possible in principle (a CSV may hold the same id twice, or an id that
happens to equal another's sanitised form): callers that must never overwrite keep a set of used
names and add their own suffix (``-2``, ``-3`` ...).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_NAME_LENGTH = 100
"""Longest name returned (characters, all ASCII): leaves room for suffixes such as ``-17.cif``
under every file system's 255-byte limit."""

_HASH_LENGTH = 8
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_DOTS = re.compile(r"\.{2,}")
# Names Windows reserves in every folder, with or without an extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LENGTH]


def safe_output_name(raw: str) -> str:
    """A safe, stable file-name component for the untrusted string ``raw``.

    The result matches ``[A-Za-z0-9._+-]+``, does not start with ``.`` or ``-`` (``_`` + hash when
    nothing usable is left), contains no ``..``, is at most :data:`MAX_NAME_LENGTH` characters long and is not a
    Windows device name. ``raw`` is returned unchanged when it already satisfies all that;
    otherwise unsafe runs of characters become ``_`` and ``-`` plus the first 8 hex digits of the
    SHA-256 of ``raw`` is appended. No extension is added: the caller appends ``.cif`` etc.

    Examples: ``"mp-1234"`` -> ``"mp-1234"``; ``"../../x"`` -> ``"_._x-<hash>"``;
    ``"/abs/path/x"`` -> ``"_abs_path_x-<hash>"``; ``""`` -> ``"_-<hash>"``.

    Raises:
        ValueError: ``raw`` is not a string.
    """
    if not isinstance(raw, str):
        raise ValueError(f"an output name must be a string, got {type(raw).__name__} {raw!r}")
    name = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", name)
    name = _DOTS.sub(".", name)
    name = name.lstrip(".-").rstrip(".")
    if (
        name == raw
        and name
        and len(name) <= MAX_NAME_LENGTH
        and name.split(".")[0].lower() not in _RESERVED
    ):
        return name
    suffix = f"-{_digest(raw)}"
    name = name[: MAX_NAME_LENGTH - len(suffix)].rstrip(".") or "_"
    if name.split(".")[0].lower() in _RESERVED:
        name = f"_{name}"[: MAX_NAME_LENGTH - len(suffix)]
    return f"{name}{suffix}"
