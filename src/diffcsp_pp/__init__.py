"""diffcsp_pp: space-group constrained crystal structure prediction and generation (DiffCSP++)."""

from __future__ import annotations

from .errors import ChecksumError, DataError, SymmetryError
from .symmetry import SymmetryInfo, SymmetryTemplate, analyze, build_template


def __getattr__(name):  # the model API imports torch: load it only when asked for
    if name == "DiffCSPPP":
        from .api import DiffCSPPP

        return DiffCSPPP
    if name == "SamplerConfig":
        from .sample.config import SamplerConfig

        return SamplerConfig
    if name == "Provenance":
        from .sample.provenance import Provenance

        return Provenance
    raise AttributeError(name)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DiffCSPPP",
    "SamplerConfig",
    "Provenance",
    "analyze",
    "build_template",
    "SymmetryInfo",
    "SymmetryTemplate",
    "SymmetryError",
    "DataError",
    "ChecksumError",
]
