"""The fingerprints of the evaluation and of template retrieval: one CrystalNN site featuriser, one
Magpie composition featuriser, one policy for missing values.

- **Structure**: matminer ``CrystalNNFingerprint.from_preset("ops")``, 61 values per site
  (:func:`crystalnn`); the evaluation summarises a crystal by the mean over its sites
  (:func:`structure_fingerprint`, as CDVAE), retrieval by mean/std/min/max
  (:mod:`diffcsp_pp.retrieval.fingerprints`), the validity gate only asks whether every site can
  be featurised (:func:`diffcsp_pp.evaluate.validity.fingerprint_valid`).
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


def structure_fingerprint(structure) -> np.ndarray | None:
    """Mean over sites of the CrystalNN "ops" fingerprint (61 values); None if it raises."""
    featurizer = crystalnn()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
        return np.asarray(sites, dtype=np.float64).mean(axis=0)
    except Exception:  # noqa: BLE001 - a failing fingerprint makes the crystal invalid
        return None


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
