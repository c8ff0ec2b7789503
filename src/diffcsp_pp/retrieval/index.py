"""The template index: everything retrieval and refinement need about a training set, without pickle.

One file, ``template_index.npz`` (``np.load(..., allow_pickle=False)``), beside a CSP model's
weights. Per training crystal (conventional cell, as preprocessed for training): material id, space
group, atoms, orbits, k (float32; re-projected onto its family on load), the count key (sorted
per-element atom counts, e.g. ``"1,1,3"``) and the standardised Magpie composition fingerprint
(float16: ranking needs no more than ~1e-3 standard deviations). Per orbit: Wyckoff label, atomic
number and the anchor's fractional coordinates (float32). The per-atom ops, anchors and coordinates
are rebuilt exactly from (space group, labels, anchor coordinates): our Wyckoff tables give the ops
of every label in the same order :func:`~diffcsp_pp.symmetry.analyze.analyze` used. Strings are
fixed-width unicode arrays; metadata is one JSON string.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from .fingerprints import COMP_DIM, Standardizer, composition_features

INDEX_FILE = "template_index.npz"
INDEX_FORMAT = 1


def count_key(counts: Sequence[int] | Mapping[str, int]) -> str:
    """``"1,1,3"``: the sorted multiset of per-element atom counts."""
    values = counts.values() if isinstance(counts, Mapping) else counts
    return ",".join(str(int(v)) for v in sorted(values))


@dataclass
class TemplateIndex:
    """Training templates as concatenated arrays (see the module docstring)."""

    material_id: np.ndarray  # [T] str
    space_group: np.ndarray  # [T] int
    num_atoms: np.ndarray  # [T] int
    num_orbits: np.ndarray  # [T] int
    count_keys: np.ndarray  # [T] str
    k: np.ndarray  # [T, 6] float
    orbit_labels: np.ndarray  # [O] str, e.g. "4e"
    orbit_z: np.ndarray  # [O] int atomic numbers
    orbit_coords: np.ndarray  # [O, 3] anchor fractional coordinates
    features: np.ndarray  # [T, 132] standardised composition fingerprints
    feature_mean: np.ndarray  # [132]
    feature_std: np.ndarray  # [132]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.orbit_start = np.concatenate([[0], np.cumsum(self.num_orbits)]).astype(np.int64)
        self._by_key: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self.count_keys):
            self._by_key[str(key)].append(i)

    def __len__(self) -> int:
        return int(self.space_group.shape[0])

    @property
    def standardizer(self) -> Standardizer:
        return Standardizer(self.feature_mean, self.feature_std)

    @property
    def max_atoms(self) -> int:
        return int(self.num_atoms.max()) if len(self) else 0

    # ------------------------------------------------------------------------------ queries
    def orbits(self, i: int) -> tuple[list[str], list[int], np.ndarray]:
        """(Wyckoff labels, atomic numbers, anchor coordinates [m, 3]) of template ``i``'s orbits."""
        a, b = self.orbit_start[i], self.orbit_start[i + 1]
        return [str(x) for x in self.orbit_labels[a:b]], [int(z) for z in self.orbit_z[a:b]], self.orbit_coords[a:b]

    def element_counts(self, i: int) -> dict[str, int]:
        """Atoms per element in template ``i``'s conventional cell."""
        from ..symmetry.templates import _symbol
        from ..symmetry.wyckoff import wyckoff_position

        labels, zs, _ = self.orbits(i)
        counts: Counter = Counter()
        sg = int(self.space_group[i])
        for label, z in zip(labels, zs, strict=True):
            counts[_symbol(z)] += wyckoff_position(sg, label).multiplicity
        return dict(counts)

    def candidates(self, composition: Mapping[str, int], max_atoms: int | None = None) -> list[tuple[int, int]]:
        """(template row, z) of every template whose count multiset equals the composition's counts
        times z, for z = 1, 2, ... while z * atoms <= ``max_atoms`` (default: the largest template)."""
        per_unit = sum(int(v) for v in composition.values())
        cap = self.max_atoms if max_atoms is None else min(int(max_atoms), self.max_atoms)
        out = []
        for z in range(1, cap // per_unit + 1):
            key = count_key([int(v) * z for v in composition.values()])
            out.extend((i, z) for i in self._by_key.get(key, []))
        return out

    # -------------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index (atomically); ``path`` is a file or a model folder."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_FILE
        arrays = {
            "format_version": np.array(INDEX_FORMAT),
            "material_id": np.asarray(self.material_id, dtype=str),
            "space_group": np.asarray(self.space_group, dtype=np.int16),
            "num_atoms": np.asarray(self.num_atoms, dtype=np.int32),
            "num_orbits": np.asarray(self.num_orbits, dtype=np.int32),
            "count_keys": np.asarray(self.count_keys, dtype=str),
            "k": np.asarray(self.k, dtype=np.float32),
            "orbit_labels": np.asarray(self.orbit_labels, dtype=str),
            "orbit_z": np.asarray(self.orbit_z, dtype=np.int16),
            "orbit_coords": np.asarray(self.orbit_coords, dtype=np.float32),
            "features": np.asarray(self.features, dtype=np.float16),
            "feature_mean": np.asarray(self.feature_mean, dtype=np.float64),
            "feature_std": np.asarray(self.feature_std, dtype=np.float64),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        with atomic_path(path, suffix=".npz") as tmp:  # world-readable: the index is package data
            np.savez_compressed(tmp, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TemplateIndex:
        """Read an index written by :meth:`save` (never unpickles); DataError if it is damaged."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_FILE
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot read the template index {path}: {err}") from None
        if int(data.get("format_version", -1)) != INDEX_FORMAT:
            raise DataError(f"{path} has index format {data.get('format_version')}, expected {INDEX_FORMAT}")
        try:
            return cls._from_arrays(data)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise DataError(f"the template index {path} is damaged ({type(err).__name__}: {err}); rebuild it with "
                            "scripts/build_template_index.py") from None

    @classmethod
    def _from_arrays(cls, data: dict) -> TemplateIndex:
        from ..symmetry.families import project_k

        sg = data["space_group"].astype(np.int64)
        k = project_k(data["k"].astype(np.float64), sg) if sg.size else data["k"].astype(np.float64)
        return cls(
            material_id=data["material_id"], space_group=sg, num_atoms=data["num_atoms"].astype(np.int64),
            num_orbits=data["num_orbits"].astype(np.int64), count_keys=data["count_keys"], k=k,
            orbit_labels=data["orbit_labels"], orbit_z=data["orbit_z"].astype(np.int64),
            orbit_coords=data["orbit_coords"].astype(np.float64), features=data["features"].astype(np.float32),
            feature_mean=data["feature_mean"], feature_std=data["feature_std"], meta=json.loads(str(data["meta"])),
        )


def _counts_of(info) -> dict[str, int]:
    from ..symmetry.templates import _symbol

    zs, n = np.unique(info.atom_types, return_counts=True)
    return {_symbol(int(z)): int(c) for z, c in zip(zs, n, strict=True)}


def index_from_infos(infos: Sequence, meta: dict | None = None, progress: bool = False) -> TemplateIndex:
    """A template index of analysed crystals (:class:`~diffcsp_pp.symmetry.analyze.SymmetryInfo`).

    The composition fingerprints are standardised with the mean and std of these crystals.
    """
    from tqdm import tqdm

    from ..symmetry.templates import atomic_number

    if not infos:
        raise ValueError("a template index needs at least one crystal")
    comps = [_counts_of(i) for i in infos]
    unique: dict[tuple, int] = {}
    keys = []
    for c in comps:
        g = math.gcd(*c.values())
        key = tuple(sorted((el, n // g) for el, n in c.items()))
        keys.append(unique.setdefault(key, len(unique)))
    formulas = list(unique)
    raw = np.concatenate([composition_features([dict(f) for f in formulas[i : i + 256]])
                          for i in tqdm(range(0, len(formulas), 256), desc="magpie", disable=not progress)])
    raw = raw.reshape(-1, COMP_DIM)[np.array(keys)]
    scaler = Standardizer.fit(raw)
    anchors = [np.unique(i.anchor_idx) for i in infos]
    return TemplateIndex(
        material_id=np.array([i.structure_id or "" for i in infos], dtype=str),
        space_group=np.array([i.space_group for i in infos], dtype=np.int64),
        num_atoms=np.array([i.num_atoms for i in infos], dtype=np.int64),
        num_orbits=np.array([i.num_orbits for i in infos], dtype=np.int64),
        count_keys=np.array([count_key(c) for c in comps], dtype=str),
        k=np.array([i.k for i in infos], dtype=np.float64).reshape(-1, 6),
        orbit_labels=np.array([w for i in infos for w in i.wyckoff_letters], dtype=str),
        orbit_z=np.array([atomic_number(s) for i in infos for s in i.species], dtype=np.int64),
        orbit_coords=np.concatenate([i.frac_coords[a] for i, a in zip(infos, anchors, strict=True)]),
        features=scaler(raw).astype(np.float32),
        feature_mean=scaler.mean, feature_std=scaler.std,
        meta=dict(meta or {}, templates=len(infos), distinct_formulas=len(formulas)),
    )


def build_template_index(train_files: Sequence[str | os.PathLike], symprec: float | None = None,
                         cache_dir: str | os.PathLike | None = None, workers: int = 1,
                         progress: bool = True) -> tuple[TemplateIndex, list]:
    """Preprocess the training file(s) exactly as training does and index every crystal.

    Returns:
        (the index, the analysed crystals in index order).
    """
    from ..data.preprocess import PreprocessConfig, preprocess
    from ..data.registry import default_cache_dir
    from ..data.store import load_records

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "preprocessed"
    infos, sources = [], []
    for f in train_files:
        res = preprocess(f, cache, PreprocessConfig(symprec=symprec), workers=workers, progress=progress)
        infos.extend(load_records(res.output))
        sources.append({"file": Path(f).name, "sha256_key": res.key[:16], "rows": res.rows,
                        "indexed": res.succeeded, "symprec": res.symprec})
    meta = {"sources": sources, "composition_fingerprint": "matminer ElementProperty.from_preset('magpie')"}
    return index_from_infos(infos, meta, progress=progress), infos
