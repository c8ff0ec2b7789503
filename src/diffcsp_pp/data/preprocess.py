"""Parallel preprocessing of a CSV or CIF folder into analysed crystals, with a keyed cache.

The output file's name carries a key hashed from the input's content, every setting and the
versions of the symmetry libraries, so a changed setting or library never reuses a stale cache
(the official code silently reloads whatever ``*_sym.pt`` exists). Rows that fail are skipped and
listed with their reasons in a JSON report beside the output; a failing row never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import DataError, SymmetryError
from ..symmetry.analyze import SymmetryInfo, analyze
from ..symmetry.constants import ANGLE_TOLERANCE, SYMPREC
from .registry import find_by_checksum
from .sources import RawCrystal, content_hash, parse_cif, read_crystals
from .store import FORMAT_VERSION, is_readable, save_records

#: Bump when the analysis itself changes in a way that alters its output.
ANALYSIS_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the analysis. ``symprec=None`` means: the registry's value for a recognised
    benchmark file (0.01 for Perov-5), else :data:`~diffcsp_pp.symmetry.constants.SYMPREC`."""

    symprec: float | None = None
    angle_tolerance: float = ANGLE_TOLERANCE


@dataclass
class PreprocessResult:
    """What :func:`preprocess` produced."""

    output: Path
    report: Path
    key: str
    rows: int
    succeeded: int
    failed: int
    cached: bool
    symprec: float
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0


def library_versions() -> dict[str, str]:
    """Versions of everything that can change the analysis output."""
    import numpy
    import pymatgen.core
    import pyxtal
    import spglib

    return {
        "spglib": spglib.__version__,
        "pyxtal": pyxtal.__version__,
        "pymatgen": getattr(pymatgen.core, "__version__", "unknown"),
        "numpy": numpy.__version__,
        "analysis": str(ANALYSIS_VERSION),
        "format": str(FORMAT_VERSION),
    }


def cache_key(content_sha256: str, symprec: float, angle_tolerance: float) -> str:
    """Hex key of (input content, settings, library versions)."""
    blob = json.dumps(
        {
            "content": content_sha256,
            "symprec": float(symprec),
            "angle_tolerance": float(angle_tolerance),
            "versions": library_versions(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def analyze_raw(item: RawCrystal, symprec: float, angle_tolerance: float):
    """Parse and analyse one input crystal: ``(row, info, None)`` or ``(row, None, (reason, detail))``."""
    try:
        structure = parse_cif(item.cif)
    except Exception as err:  # noqa: BLE001 - any parser failure is a per-row failure
        return item.row, None, ("cif_parse_error", f"{type(err).__name__}: {err}"[:300])
    try:
        info = analyze(structure, symprec, angle_tolerance, structure_id=item.material_id)
    except SymmetryError as err:
        return item.row, None, (err.reason, err.detail)
    return item.row, info, None


def _worker(args):
    item, symprec, angle_tolerance = args
    return analyze_raw(item, symprec, angle_tolerance)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".cif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def run_analysis(items, symprec, angle_tolerance, workers=1, progress=True, desc="analyse"):
    """Analyse many crystals (in ``workers`` processes), yielding results in input order."""
    from ..parallel import ProcessPool

    jobs = [(item, symprec, angle_tolerance) for item in items]
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    with ProcessPool(workers, progress) as pool:
        yield from pool.map(_worker, jobs, desc, chunksize=chunk)


def preprocess(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PreprocessConfig = PreprocessConfig(),
    workers: int = 1,
    progress: bool = True,
) -> PreprocessResult:
    """Analyse every crystal of a CSV/CIF folder into ``out_dir`` (reusing a matching cache).

    Writes ``<stem>.<key16>.npz`` (see :mod:`~diffcsp_pp.data.store`) and
    ``<stem>.<key16>.report.json`` (settings, versions, counts, every failed row with its reason).
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise FileNotFoundError(f"no such file or folder: {input_path}")
    if config.symprec is not None and not config.symprec > 0:
        raise ValueError(f"symprec must be > 0, got {config.symprec}")
    if not config.angle_tolerance > 0:
        raise ValueError(f"angle_tolerance must be > 0, got {config.angle_tolerance}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    from ..policy import check

    check("workers", workers, "workers")
    sha = content_hash(input_path)
    known = None if input_path.is_dir() else find_by_checksum(sha)
    symprec = config.symprec if config.symprec is not None else (known.symprec if known else SYMPREC)
    key = cache_key(sha, symprec, config.angle_tolerance)
    out_dir = Path(out_dir)
    base = f"{_stem(input_path)}.{key[:16]}"
    output, report = out_dir / f"{base}.npz", out_dir / f"{base}.report.json"
    if output.is_file() and report.is_file():
        try:
            summary = json.loads(report.read_text())
            cached = PreprocessResult(
                output, report, key, summary["rows"], summary["succeeded"], summary["failed"],
                True, symprec, summary["failures_by_reason"], summary["wall_time_s"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            cached = None  # unreadable report: recompute below
        if cached is not None and is_readable(output):
            return cached
        warnings.warn(f"the cached preprocessing of {input_path} ({output}) is damaged (a truncated or corrupt file); "
                      "rebuilding it", RuntimeWarning, stacklevel=2)

    items = read_crystals(input_path)
    start = time.perf_counter()
    infos: list[SymmetryInfo] = []
    rows: list[int] = []
    failures = []
    for row, info, failure in run_analysis(
        items, symprec, config.angle_tolerance, workers, progress, desc=_stem(input_path)
    ):
        if info is not None:
            infos.append(info)
            rows.append(row)
        else:
            failures.append(
                {"row": row, "material_id": items[row].material_id, "reason": failure[0], "detail": failure[1]}
            )
    wall = time.perf_counter() - start
    try:
        save_records(output, infos, rows)
    except OSError as err:
        raise DataError(f"cannot write the preprocessed data to {out_dir} ({err.strerror or err}); choose a writable "
                        "folder (--out, --cache-dir, or the DIFFCSP_PP_CACHE variable)") from None
    by_reason = dict(Counter(f["reason"] for f in failures).most_common())
    summary = {
        "input": str(input_path),
        "content_sha256": sha,
        "registry_name": known.name if known else None,
        "key": key,
        "settings": {**asdict(config), "symprec": symprec},
        "versions": library_versions(),
        "workers": workers,
        "rows": len(items),
        "succeeded": len(infos),
        "failed": len(failures),
        "failures_by_reason": by_reason,
        "wall_time_s": round(wall, 3),
        "structures_per_s": round(len(items) / wall, 2) if wall > 0 else None,
        "failures": failures,
    }
    try:
        write_json_atomic(report, summary)
    except OSError as err:
        raise DataError(f"cannot write the preprocessing report to {out_dir} ({err.strerror or err})") from None
    return PreprocessResult(
        output, report, key, len(items), len(infos), len(failures), False, symprec, by_reason, wall
    )


__all__ = ["PreprocessConfig", "PreprocessResult", "preprocess", "cache_key", "library_versions", "DataError"]
