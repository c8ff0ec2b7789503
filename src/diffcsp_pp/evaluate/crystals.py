"""Per-crystal analysis of generated, reference and training crystals (parsing, fingerprints,
validity, space groups, templates, reduced cells) on the process pool, and the cached arrays of a
reference or training set (``default_cache_dir()/evaluate``, keyed by the file's content hash;
npz without pickles)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..parallel import ProcessPool
from .fingerprints import COMP_FP_DIM, STRUCT_FP_DIM, composition_fingerprint, structure_fingerprint
from .novelty import reduced_cell, wyckoff_template

#: spglib tolerance (Å) of the requested-space-group check (the tolerance outputs are written with).
STRICT_SYMPREC = 1e-3
CACHE_VERSION = 2


def parse_crystal(source):
    from pymatgen.core import Structure

    from ..data.sources import parse_cif

    if isinstance(source, Structure):
        return source
    if source is None:
        return None
    try:
        structure = parse_cif(source)
    except Exception:  # noqa: BLE001 - an unreadable CIF is an invalid crystal
        return None
    return structure if len(structure) else None


def space_group_or_zero(structure, symprec: float) -> int:
    from ..symmetry.analyze import detect_space_group

    try:
        return detect_space_group(structure, symprec)
    except Exception:  # noqa: BLE001 - spglib failure: no space group
        return 0


def _analyze_one(kind: str, source, opts: dict) -> dict:
    from .validity import structure_composition_valid, structure_valid

    s = parse_crystal(source)
    if s is None:
        return {"parsed": False}
    out = {"parsed": True, "formula": s.composition.reduced_formula, "num_atoms": len(s)}
    if kind == "reduce":
        red = reduced_cell(s)
        out["reduced"] = red
        return out
    cfp = composition_fingerprint(s.composition)
    out["comp_fp"] = cfp
    out["space_group"], out["template"] = wyckoff_template(s, opts["symprec"])
    if kind == "training":
        return out
    out["struct_fp"] = structure_fingerprint(s)
    out["density"] = float(s.density) if s.volume > 0 else float("nan")
    out["num_elements"] = len(s.composition.elements)
    if opts.get("keep_structure"):
        out["structure"] = s
    if kind == "generated":
        try:
            out["struct_valid"] = bool(structure_valid(s))
        except Exception:  # noqa: BLE001
            out["struct_valid"] = False
        for key, ox in (("comp_valid", "smact14"), ("comp_valid_icsd24", "icsd24")):
            try:
                out[key] = bool(structure_composition_valid(s, oxidation_states=ox))
            except Exception:  # noqa: BLE001
                out[key] = False
        out["space_group_strict"] = space_group_or_zero(s, STRICT_SYMPREC)
        out["reduced"] = reduced_cell(s)
    return out


def _analyze_chunk(job):
    kind, items, opts = job
    warnings.simplefilter("ignore")
    return [(i, _analyze_one(kind, src, opts)) for i, src in items]


def analyze_all(pool: ProcessPool, kind: str, sources: Sequence, opts: dict, desc: str, chunk: int) -> list[dict]:
    """:func:`_analyze_one` of every source (chunks of ``chunk`` on the pool), in input order."""
    items = list(enumerate(sources))
    jobs = [(kind, items[i:i + chunk], opts) for i in range(0, len(items), chunk)]
    out: list[dict] = [{} for _ in items]
    for res in pool.map(_analyze_chunk, jobs, desc, sizes=[len(j[1]) for j in jobs]):
        for i, rec in res:
            out[i] = rec
    return out


def stack_fingerprints(records: list[dict], key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.full((len(records), dim), np.nan)
    ok = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        v = r.get(key)
        if v is not None:
            arr[i] = v
            ok[i] = True
    return arr, ok


def _set_arrays(records: list[dict], kind: str) -> dict:
    comp, comp_ok = stack_fingerprints(records, "comp_fp", COMP_FP_DIM)
    arrays = {
        "parsed": np.array([bool(r.get("parsed")) for r in records], dtype=bool),
        "formula": np.array([r.get("formula") or "" for r in records], dtype=str),
        "comp_fp": comp, "comp_ok": comp_ok,
        "space_group": np.array([r.get("space_group", 0) for r in records], dtype=np.int64),
        "template": np.array([r.get("template") or "" for r in records], dtype=str),
    }
    if kind == "reference":
        struct, struct_ok = stack_fingerprints(records, "struct_fp", STRUCT_FP_DIM)
        arrays.update(struct_fp=struct, struct_ok=struct_ok,
                      density=np.array([r.get("density", np.nan) for r in records], dtype=np.float64),
                      num_elements=np.array([r.get("num_elements", 0) for r in records], dtype=np.int64))
    return arrays


def _resolve_set(source) -> tuple[list, str | None]:
    """(sources, content hash or None) of a path or a sequence of Structures / CIF texts."""
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and "\n" in source):
        from ..data.sources import content_hash, read_crystals

        return [raw.cif for raw in read_crystals(source)], content_hash(source)
    return list(source), None


def read_cache(path: Path, n: int):
    """Contents of a cache file (dict of arrays for .npz, an array for .npy) if it describes ``n``
    crystals; None if it is missing, broken or stale (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                content = {k: data[k] for k in data.files}
            size = len(content["parsed"])
        else:
            content = np.load(path, allow_pickle=False)
            size = len(content)
    except Exception:  # noqa: BLE001 - a broken cache is recomputed
        return None
    return content if size == n else None


def save_npz(path: Path, **arrays) -> None:
    with contextlib.suppress(OSError):  # an unwritable cache only costs time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def set_analysis(pool: ProcessPool, kind: str, source, symprec: float, cache_dir, desc: str) -> tuple[dict, list]:
    """Per-crystal arrays of a reference or training set, cached by content hash when it is a file."""
    sources, digest = _resolve_set(source)
    if not sources:
        raise ValueError(f"the {kind} set is empty")
    path = None
    if cache_dir is not None and digest is not None:
        path = Path(cache_dir) / f"{kind}-{digest[:32]}-sp{symprec:g}-v{CACHE_VERSION}.npz"
        cached = read_cache(path, len(sources))
        if cached is not None:
            return cached, sources
    chunk = 64 if kind == "training" else 8
    records = analyze_all(pool, kind, sources, {"symprec": symprec}, desc, chunk)
    arrays = _set_arrays(records, kind)
    if path is not None:
        save_npz(path, **arrays)
    return arrays, sources
