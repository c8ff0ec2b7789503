"""Validity of a crystal as the benchmarks define it (METHOD §7.3).

- **compositional**: charge neutrality with SMACT's oxidation states and the Pauling
  electronegativity test, on the element counts divided by their gcd. One-element compositions and
  all-metal compositions (alloys) are valid; compositions with more than 10⁷ oxidation-state
  combinations are invalid. Written against the current SMACT API (the official code breaks with
  SMACT ≥ 3): the neutrality search is a vectorised sum over all combinations, the Pauling test is
  SMACT's own. The oxidation states are the **SMACT14** set by default — the set of SMACT < 3
  (the paper's environment pins smact 2.2.1), which SMACT ≥ 3 still exposes as
  ``Element.oxidation_states_smact14`` — or the **ICSD24** set that SMACT ≥ 3 uses by default
  (``Element.oxidation_states``); the two disagree on about 6 % of MP-20 test formulas.
- **structural**: every pair of distinct sites at least 0.5 Å apart (minimum image) and a volume of
  at least 0.1 Å³.
- **fingerprint**: the CrystalNN "ops" fingerprint can be computed for every site (matminer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Minimum distance (Å) between distinct sites of a valid structure.
MIN_DISTANCE = 0.5
#: Minimum cell volume (Å³) of a valid structure.
MIN_VOLUME = 0.1
#: Compositions with more oxidation-state combinations than this are declared invalid.
MAX_OX_COMBINATIONS = 10**7
#: Oxidation-state sets: SMACT14 (SMACT < 3, the paper's) and ICSD24 (SMACT ≥ 3's default).
OXIDATION_STATE_SETS = ("smact14", "icsd24")


@lru_cache(maxsize=None)
def _smact_element(symbol: str, oxidation_states: str = "smact14"):
    import smact

    element = smact.Element(symbol)
    states = element.oxidation_states_smact14 if oxidation_states == "smact14" else element.oxidation_states
    return tuple(states or ()), element.pauling_eneg


def composition_valid(elements: Sequence[str], counts: Sequence[int], pauling: bool = True, alloys: bool = True,
                      oxidation_states: str = "smact14") -> bool:
    """SMACT charge-neutrality validity of a composition (one entry per distinct element).

    Args:
        oxidation_states: ``"smact14"`` (the paper's, default) or ``"icsd24"``.
    """
    import smact
    from smact.screening import pauling_test

    if len(elements) != len(counts) or not elements:
        raise ValueError(f"elements and counts must be non-empty and of equal length, got {elements}, {counts}")
    if oxidation_states not in OXIDATION_STATE_SETS:
        raise ValueError(f"oxidation_states must be one of {OXIDATION_STATE_SETS}, got {oxidation_states!r}")
    if len(set(elements)) == 1:
        return True
    if alloys and all(e in smact.metals for e in elements):
        return True
    g = math.gcd(*(int(c) for c in counts))
    counts = np.asarray(counts, dtype=np.int64) // g
    info = [_smact_element(e, oxidation_states) for e in elements]
    states = [np.asarray(ox, dtype=np.int64) for ox, _ in info]
    if any(s.size == 0 for s in states):
        return False
    if math.prod(s.size for s in states) > MAX_OX_COMBINATIONS:
        return False
    # total charge of every combination, built up one element at a time: [n_1 * ... * n_k]
    total = np.zeros(1, dtype=np.int64)
    for s, c in zip(states, counts, strict=True):
        total = (total[:, None] + c * s[None, :]).ravel()
    neutral = np.flatnonzero(total == 0)
    if neutral.size == 0:
        return False
    if not pauling:
        return True
    enegs = [e for _, e in info]
    shape = [s.size for s in states]
    for flat in neutral:
        combo = [int(states[i][j]) for i, j in enumerate(np.unravel_index(flat, shape))]
        try:
            if pauling_test(combo, enegs):
                return True
        except TypeError:  # an element without a Pauling electronegativity: the test cannot apply
            return True
    return False


def structure_composition_valid(structure, oxidation_states: str = "smact14") -> bool:
    """:func:`composition_valid` of a pymatgen Structure."""
    comp = structure.composition.element_composition
    elements = [el.symbol for el in comp]
    counts = [int(round(comp[el])) for el in comp]
    return composition_valid(elements, counts, oxidation_states=oxidation_states)


def structure_valid(structure, cutoff: float = MIN_DISTANCE) -> bool:
    """All distinct sites at least ``cutoff`` Å apart and volume ≥ MIN_VOLUME Å³."""
    if not np.isfinite(structure.lattice.matrix).all() or structure.volume < MIN_VOLUME:
        return False
    if len(structure) < 2:
        return True
    dist = structure.distance_matrix + np.eye(len(structure)) * (cutoff + 10.0)
    return bool(dist.min() >= cutoff)


def fingerprint_valid(structure) -> bool:
    """True if the CrystalNN "ops" fingerprint of every site can be computed (one site per orbit of
    equivalent sites is featurised: :func:`~diffcsp_pp.evaluate.fingerprints.site_fingerprints`)."""
    from .fingerprints import site_fingerprints

    return site_fingerprints(structure) is not None


__all__ = ["OXIDATION_STATE_SETS", "composition_valid", "structure_composition_valid", "structure_valid", "fingerprint_valid"]
