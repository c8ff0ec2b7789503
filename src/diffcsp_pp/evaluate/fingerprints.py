"""The fingerprints of the evaluation and of template retrieval: one CrystalNN site featuriser, one
Magpie composition featuriser, one policy for missing values.

- **Structure**: matminer ``CrystalNNFingerprint.from_preset("ops")``, 61 values per site
  (:func:`crystalnn`); the evaluation summarises a crystal by the mean over its sites
  (:func:`structure_fingerprint`, as CDVAE), retrieval by mean/std/min/max
  (:mod:`diffcsp_pp.retrieval.fingerprints`), the validity gate only asks whether every site can
  be featurised (:func:`diffcsp_pp.evaluate.validity.fingerprint_valid`). Symmetry-equivalent
  sites have the same environment, so each use featurises one site per orbit
  (:func:`site_orbits`) and counts it for the orbit's sites: the evaluation with orbits found at
  1e-6 Å (:data:`EVAL_ORBIT_SYMPREC`, sites equivalent to rounding), which makes it 4-5x cheaper
  on generated conventional cells (docs/BENCHMARKS.md §17).
- **Composition**: matminer ``ElementProperty.from_preset("magpie")``, 132 values (:func:`magpie`).
  The evaluation uses it without imputation (``impute_nan=False``, as matminer 0.7 behaved in the
  paper's code): a property missing for an element gives NaN. Template retrieval's bundled indexes
  were built with matminer's default imputation (``impute_nan=True``), so retrieval keeps that
  variant of the same featuriser (its stored fingerprints must stay comparable).
- **Missing values**: after standardisation (``(x - mean) / std``) a NaN (or infinite) entry
  becomes 0, i.e. the mean (:func:`fill_missing`); a standard deviation of 0 or NaN becomes 1
  (:func:`fit_standardizer`).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

#: Dimensions of the fingerprints: CrystalNN "ops" per site, Magpie per composition.
STRUCT_FP_DIM, COMP_FP_DIM = 61, 132


@lru_cache(maxsize=1)
def crystalnn():
    """The CrystalNN site featuriser (``CrystalNNFingerprint.from_preset("ops")``, 61 values per site)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from matminer.featurizers.site import CrystalNNFingerprint

        return CrystalNNFingerprint.from_preset("ops")


@lru_cache(maxsize=2)
def magpie(impute_nan: bool = False):
    """The Magpie composition featuriser (``ElementProperty.from_preset("magpie")``, 132 values);
    ``impute_nan=False``: NaN where matminer has no value (the evaluation's), True: retrieval's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from matminer.featurizers.composition import ElementProperty

        return ElementProperty.from_preset("magpie", impute_nan=impute_nan)


#: Tolerance (Å) of the site equivalence the evaluation featurises one site per orbit with: sites
#: whose positions a symmetry operation maps onto each other to this precision.
EVAL_ORBIT_SYMPREC = 1e-6


def site_orbits(structure, symprec: float) -> tuple[np.ndarray, np.ndarray]:
    """(one representative site index per orbit, orbit sizes) under the structure's own space group
    found by spglib at ``symprec`` (Å). Without symmetry (or if spglib fails) every site is its own orbit."""
    from ..symmetry.analyze import structure_dataset

    dataset = structure_dataset(structure, symprec)
    if dataset is None:
        return np.arange(len(structure)), np.ones(len(structure), dtype=np.int64)
    reps, sizes = np.unique(np.asarray(dataset.equivalent_atoms), return_counts=True)
    return reps, sizes


def site_fingerprints(structure, symprec: float | None = EVAL_ORBIT_SYMPREC) -> tuple[np.ndarray, np.ndarray] | None:
    """(CrystalNN "ops" fingerprints [m, 61] of one site per orbit, orbit sizes [m]); every site
    (sizes 1) with ``symprec=None``; None if the featuriser raises on a site."""
    featurizer = crystalnn()
    if len(structure) == 0:
        return None
    if symprec is None:
        reps, sizes = np.arange(len(structure)), np.ones(len(structure), dtype=np.int64)
    else:
        reps, sizes = site_orbits(structure, symprec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sites = [featurizer.featurize(structure, int(i)) for i in reps]
    except Exception:  # noqa: BLE001 - a failing fingerprint makes the crystal invalid
        return None
    return np.asarray(sites, dtype=np.float64).reshape(len(reps), -1), sizes


def structure_fingerprint(structure, symprec: float | None = EVAL_ORBIT_SYMPREC) -> np.ndarray | None:
    """Mean over sites of the CrystalNN "ops" fingerprint (61 values); None if it raises. One site
    per orbit is featurised and weighted by the orbit size (:func:`site_fingerprints`)."""
    found = site_fingerprints(structure, symprec)
    if found is None:
        return None
    sites, sizes = found
    return (sites * sizes[:, None]).sum(0) / sizes.sum()


@lru_cache(maxsize=16384)
def _comp_fp_cached(key: tuple) -> tuple | None:
    from pymatgen.core import Composition

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tuple(float(v) for v in magpie().featurize(Composition(dict(key))))
    except Exception:  # noqa: BLE001
        return None


def composition_fingerprint(composition) -> np.ndarray | None:
    """Magpie ElementProperty fingerprint (132 values, NaN where matminer has no data); None on failure."""
    reduced = composition.element_composition.reduced_composition
    key = tuple(sorted((el.symbol, float(amt)) for el, amt in reduced.items()))
    values = _comp_fp_cached(key)
    return None if values is None else np.asarray(values, dtype=np.float64)


def fill_missing(values: np.ndarray) -> np.ndarray:
    """The missing-value policy of standardised fingerprints: NaN and ±inf become 0 (the mean)."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def fit_standardizer(fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over rows, ignoring NaN; a NaN mean becomes 0 and a std of 0 or NaN becomes 1."""
    fps = np.asarray(fps, dtype=np.float64)
    if fps.ndim != 2 or fps.shape[0] == 0:
        raise ValueError("need at least one composition fingerprint to standardise with")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(fps, axis=0)
        std = np.nanstd(fps, axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    std = np.where(np.isnan(std) | (std == 0), 1.0, std)
    return mean, std


def standardize(fps: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(fps - mean) / std with missing entries 0 (:func:`fill_missing`)."""
    return fill_missing((np.asarray(fps, dtype=np.float64) - mean) / std)
