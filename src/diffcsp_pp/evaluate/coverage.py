"""COV-R / COV-P (METHOD §7.3): nearest fingerprint distances between generated and reference
crystals against the dataset's cutoffs, as the official ``compute_cov``."""

from __future__ import annotations

import numpy as np

#: COV cutoffs (structure, composition) per dataset.
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp_20": (0.4, 10.0),
    "carbon_24": (0.2, 4.0),
    "perov_5": (0.2, 4.0),
    "mpts_52": (0.4, 10.0),  # no generation benchmark; the official config points to mp20
}
#: Composition-fingerprint scalings of COV: CDVAE's fixed constants (the paper's) or the training set's.
COMPOSITION_SCALINGS = ("cdvae", "train")


def composition_scaler(scaling: str, training_fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) that standardise composition fingerprints: CDVAE's fixed constants
    (``"cdvae"``, the paper's) or the training fingerprints' (``"train"``, [n, 132] with NaN)."""
    from .fingerprints import fit_standardizer

    if scaling == "cdvae":
        from .constants import CDVAE_COMP_SCALER_MEANS, CDVAE_COMP_SCALER_STDS

        return np.asarray(CDVAE_COMP_SCALER_MEANS), np.asarray(CDVAE_COMP_SCALER_STDS)
    if scaling == "train":
        return fit_standardizer(training_fps)
    raise ValueError(f"composition_scaling must be one of {COMPOSITION_SCALINGS}, got {scaling!r}")


def coverage(gen_struct, gen_comp, ref_struct, ref_comp, struct_cutoff: float, comp_cutoff: float,
             num_generated: int | None = None, chunk: int = 1024) -> dict:
    """COV-R / COV-P of the official ``compute_cov`` on fingerprint arrays.

    Args:
        gen_struct, gen_comp: [n_gen, d_s], [n_gen, d_c] fingerprints of the generated crystals whose
            fingerprints could be computed (composition fingerprints already standardised).
        ref_struct, ref_comp: the same for the reference crystals.
        struct_cutoff, comp_cutoff: distance cutoffs.
        num_generated: denominator of COV-P (all generated crystals); default ``n_gen``.

    Returns:
        dict with ``cov_recall``, ``cov_precision`` and the mean nearest-neighbour distances
        ``amsd_recall``, ``amsd_precision``, ``amcd_recall``, ``amcd_precision``. The nearest
        neighbour in structure space and in composition space are found independently.
    """
    from scipy.spatial.distance import cdist

    gs, gc = np.atleast_2d(np.asarray(gen_struct, float)), np.atleast_2d(np.asarray(gen_comp, float))
    rs, rc = np.atleast_2d(np.asarray(ref_struct, float)), np.atleast_2d(np.asarray(ref_comp, float))
    n_gen = len(gen_struct)
    if len(gen_comp) != n_gen or len(ref_comp) != len(ref_struct):
        raise ValueError("structure and composition fingerprints must have the same number of rows")
    num_generated = n_gen if num_generated is None else int(num_generated)
    if num_generated < n_gen:
        raise ValueError(f"num_generated ({num_generated}) < fingerprinted generated crystals ({n_gen})")
    n_ref = len(ref_struct)
    if n_gen == 0 or n_ref == 0:
        return {"cov_recall": 0.0 if n_ref else None, "cov_precision": 0.0 if num_generated else None,
                "amsd_recall": None, "amsd_precision": None, "amcd_recall": None, "amcd_precision": None}
    rec_s = np.full(n_ref, np.inf)
    rec_c = np.full(n_ref, np.inf)
    prec_s = np.empty(n_gen)
    prec_c = np.empty(n_gen)
    for start in range(0, n_gen, chunk):  # memory: chunk x n_ref distances at a time
        ds = cdist(gs[start:start + chunk], rs)
        dc = cdist(gc[start:start + chunk], rc)
        rec_s = np.minimum(rec_s, ds.min(axis=0))
        rec_c = np.minimum(rec_c, dc.min(axis=0))
        prec_s[start:start + chunk] = ds.min(axis=1)
        prec_c[start:start + chunk] = dc.min(axis=1)
    recall = (rec_s <= struct_cutoff) & (rec_c <= comp_cutoff)
    precision = (prec_s <= struct_cutoff) & (prec_c <= comp_cutoff)
    return {
        "cov_recall": float(recall.mean()),
        "cov_precision": float(precision.sum() / num_generated),
        "amsd_recall": float(rec_s.mean()), "amsd_precision": float(prec_s.mean()),
        "amcd_recall": float(rec_c.mean()), "amcd_precision": float(prec_c.mean()),
    }
