"""Chemistry-aware ranking of enumerated Wyckoff assignments (used when the user gives none).

Several decorations of one Wyckoff pattern are often possible (SrTiO3 in Pm-3m: Sr on 1a and Ti on
1b, or the reverse, with O on 3c either way), and the pattern counts of the training data cannot
tell them apart. The species-resolved keys of a model's ``template_stats.json``
(``"221:O:3c,Sr:1a,Ti:1b"`` -> count) can: an assignment scores every training decoration of the same
space group and the same multiset of Wyckoff labels by count · exp(-D / SIMILARITY_SCALE), where D is
the mean, over orbits, of the distance between the element the assignment puts on a position and the
element the training crystal had there (orbits on equal labels matched by the Hungarian assignment).
Distances are Euclidean between standardised elemental property vectors (Mendeleev number, group,
period, covalent radius, electronegativity, valence shells, ionisation energy;
:mod:`diffcsp_pp.retrieval.substitution`). So SrTiO3 follows the training perovskites (BaTiO3-like
decorations: the large cation on the A site) rather than the anti-perovskites.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

#: Mean per-orbit distance (standardised property units) at which a decoration's weight falls to 1/e.
SIMILARITY_SCALE = 0.5


def decorations(stats: Mapping[str, int], space_group: int | None = None
                ) -> dict[tuple[int, tuple[str, ...]], list[tuple[dict[str, list[str]], int]]]:
    """(space group, sorted labels) -> [({label: [elements]}, count)] from species-resolved keys (of
    one space group only, if given)."""
    from ..data.template_stats import TemplateStats

    out: dict = defaultdict(list)
    for sg, sites, count in TemplateStats.of(stats).decorations(space_group):
        by_label: dict[str, list[str]] = defaultdict(list)
        for el, label in sites:
            by_label[label].append(el)
        labels = tuple(sorted(lab for lab, els in by_label.items() for _ in els))
        out[(sg, labels)].append((dict(by_label), count))
    return dict(out)


def decoration_score(space_group: int, sites: Sequence[tuple[str, str]],
                     known: Mapping[tuple[int, tuple[str, ...]], list]) -> float:
    """Σ over training decorations of the same pattern of count · exp(-mean orbit distance / scale)."""
    from ..retrieval.substitution import element_table

    table = element_table()
    labels = tuple(sorted(lab for _, lab in sites))
    mine: dict[str, list[str]] = defaultdict(list)
    for el, lab in sites:
        mine[lab].append(el)
    if any(el not in table for el, _ in sites):
        return 0.0
    score = 0.0
    for theirs, count in known.get((space_group, labels), []):
        total = 0.0
        for lab, els in mine.items():
            other = [e for e in theirs.get(lab, []) if e in table]
            if len(other) != len(els):
                total = np.inf
                break
            total += min_assignment_cost(_distances(tuple(els), tuple(other)))
        if np.isfinite(total):
            score += count * float(np.exp(-total / len(sites) / SIMILARITY_SCALE))
    return score


#: square cost matrices up to this size are solved by enumerating permutations (exact, and it spares
#: every ``predict`` the 0.6 s import of scipy.optimize); larger ones by the Hungarian algorithm
_BRUTE_FORCE_MAX = 6


def min_assignment_cost(cost: np.ndarray) -> float:
    """The least total cost of a one-to-one assignment of the rows of a square matrix to its columns."""
    n = len(cost)
    if n <= _BRUTE_FORCE_MAX:
        perms = _permutations(n)
        return float(cost[np.arange(n), perms].sum(axis=1).min()) if n else 0.0
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


@lru_cache(maxsize=None)
def _permutations(n: int) -> np.ndarray:
    import itertools

    return np.array(list(itertools.permutations(range(n))), dtype=np.intp).reshape(-1, n)


@lru_cache(maxsize=65536)
def _distances(a: tuple[str, ...], b: tuple[str, ...]) -> np.ndarray:
    from ..retrieval.substitution import element_table

    table = element_table()
    return np.linalg.norm(np.stack([table[e] for e in a])[:, None] - np.stack([table[e] for e in b])[None], axis=-1)
