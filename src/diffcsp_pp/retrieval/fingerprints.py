"""Structure and composition fingerprints used by template retrieval (METHOD §7.2).

- **Structure fingerprint** (only to label scorer training pairs): per-site
  ``CrystalNNFingerprint.from_preset("ops")`` (61 values per site), summarised over the sites by
  mean, std, min and max (244 values). It is computed on the CSV's own cell: the four statistics do
  not change when a cell is replaced by a supercell, so the smaller cell is the cheaper choice.
  CrystalNN is slow (about 0.05 s per site on this CPU), so it runs once per orbit of symmetry-equivalent
  sites (weighted by the orbit size; :func:`~diffcsp_pp.evaluate.fingerprints.site_orbits`), and :func:`structure_fingerprints`
  computes a file's fingerprints once, in one process, and caches them (npz, no pickle) under
  ``default_cache_dir()/retrieval`` keyed by the file's content hash. A structure whose
  fingerprint raises gets a row of NaN.
The featurisers and the missing-value policy are :mod:`diffcsp_pp.evaluate.fingerprints`'s.

- **Composition fingerprint**: matminer ``ElementProperty.from_preset("magpie")`` (132 values, matminer's
  default NaN imputation, with which the bundled template indexes were built) of
  the composition (fractional, so a formula and its multiples have the same fingerprint). NaN
  entries (properties missing for an element) are returned as NaN; :class:`Standardizer` replaces
  them by 0 after standardisation (i.e. by the training mean).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..evaluate.fingerprints import fill_missing, magpie, site_fingerprints
#: Dimension of the composition fingerprint (22 Magpie properties x 6 statistics).
COMP_DIM = 132
#: Dimension of the structure fingerprint (61 CrystalNN "ops" features x mean/std/min/max).
STRUCT_DIM = 244
#: Positive-pair cutoff on the Euclidean structure-fingerprint distance (METHOD §7.2 item 8).
POSITIVE_CUTOFF = 0.3
_FP_VERSION = 2  # 2: one CrystalNN call per orbit (site_orbits)


@lru_cache(maxsize=4096)
def _comp_row(reduced: tuple[tuple[str, int], ...]) -> tuple[float, ...]:
    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = magpie(impute_nan=True).featurize(Composition(dict(reduced)))  # the bundled indexes' variant
    return tuple(float(v) for v in values)


def composition_features(compositions: Sequence) -> np.ndarray:
    """Magpie fingerprints [n, 132] (float64; NaN where matminer has no value).

    Args:
        compositions: formulas (``"SrTiO3"``), ``{element: count}`` dicts or pymatgen Compositions.
    """
    from pymatgen.core import Composition

    rows = []
    for comp in compositions:
        c = Composition(comp) if not isinstance(comp, Composition) else comp
        amounts = c.get_el_amt_dict()
        g = np.gcd.reduce([int(round(v)) for v in amounts.values()]) if all(float(v).is_integer() for v in amounts.values()) else 1
        key = tuple(sorted((el, int(round(v / g)) if g > 1 else v) for el, v in amounts.items()))
        rows.append(_comp_row(key))
    return np.array(rows, dtype=np.float64).reshape(-1, COMP_DIM)


@dataclass(frozen=True)
class Standardizer:
    """Per-feature standardisation with training mean and std; NaN -> 0 (the training mean)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardizer:
        mean = np.nanmean(features, axis=0)
        std = np.nanstd(features, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std), std, 0.0)
        return cls(mean.astype(np.float64), std.astype(np.float64))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / (self.std + 1e-6)
        return fill_missing(z)


#: Tolerance (Å) of the site-equivalence test that lets :func:`site_fingerprint_summary` featurise one
#: site per orbit (the bundled template indexes were built with it).
ORBIT_SYMPREC = 1e-3


def weighted_site_summary(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[4 d] mean, std (population), min and max over sites, each row of ``features`` [m, d] counted
    ``weights`` [m] times — the statistics of the full site list without repeating equal rows."""
    features = np.asarray(features, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)[:, None]
    mean = (w * features).sum(0) / w.sum()
    std = np.sqrt((w * (features - mean) ** 2).sum(0) / w.sum())
    return np.concatenate([mean, std, features.min(0), features.max(0)])


def site_fingerprint_summary(structure, use_symmetry: bool = True) -> np.ndarray:
    """[244] mean, std, min and max over sites of the CrystalNN "ops" site fingerprints (NaN on failure).

    With ``use_symmetry`` one site per orbit is featurised (:func:`~diffcsp_pp.evaluate.fingerprints.site_orbits`) and weighted by
    the orbit size; the statistics are those of all sites (tested), at a fraction of the cost for
    crystals with large orbits.
    """
    found = site_fingerprints(structure, ORBIT_SYMPREC if use_symmetry else None)
    if found is None:  # any CrystalNN failure leaves the structure without fingerprint
        return np.full(STRUCT_DIM, np.nan)
    return weighted_site_summary(*found)


def structure_fingerprints(csv_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                           progress: bool = True) -> tuple[list[str], np.ndarray]:
    """(material ids, [n, 244] structure fingerprints) of every row of a CSV / CIF folder, cached.

    The cache file ``<stem>.<sha16>.sfp.npz`` is written once (atomically) and reused whenever the
    input's content hash matches; computation runs in this process only.
    """
    from tqdm import tqdm

    from ..data.preprocess import _stem
    from ..data.registry import default_cache_dir
    from ..data.sources import content_hash, parse_cif, read_crystals

    path = Path(csv_path)
    sha = content_hash(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "retrieval"
    out = cache / f"{_stem(path)}.{sha[:16]}.sfp.npz"
    if out.is_file():
        with np.load(out, allow_pickle=False) as data:
            if int(data["version"]) == _FP_VERSION:
                return [str(m) for m in data["material_id"]], data["fingerprints"]
    items = read_crystals(path)
    fps = np.full((len(items), STRUCT_DIM), np.nan)
    for i, item in enumerate(tqdm(items, desc=f"fingerprints {_stem(path)}", unit="crystal", disable=not progress,
                                  file=sys.stderr)):
        try:
            structure = parse_cif(item.cif)
        except Exception:  # noqa: BLE001 - unreadable rows keep NaN
            continue
        fps[i] = site_fingerprint_summary(structure)
    ids = [item.material_id for item in items]
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez_compressed(tmp, version=np.array(_FP_VERSION), material_id=np.array(ids, dtype=str), fingerprints=fps)
    return ids, fps
