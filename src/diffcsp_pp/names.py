"""Names of output files.

PLACEHOLDER (helper H21): helper H18 owns this module and writes the full ``safe_output_name``
(issue #18); this minimal version has the agreed signature so the output writer can call the one
function now. The lead reconciles the two.
"""

from __future__ import annotations

import re

#: Longest file name stem written (file systems allow 255 bytes; room for suffixes and ".cif").
MAX_NAME = 200

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@,-]+")


def safe_output_name(raw: str) -> str:
    """A file-name stem for a material id or structure name: path separators, control characters
    and other unsafe characters become ``_``; no leading dot (no hidden files, no ``..``); at most
    MAX_NAME characters; never empty. Idempotent: ``safe_output_name(safe_output_name(x)) ==
    safe_output_name(x)``."""
    if not isinstance(raw, str):
        raise ValueError(f"an output name must be a string, got {raw!r}")
    name = _UNSAFE.sub("_", raw).lstrip(".")[:MAX_NAME]
    return name or "_"
