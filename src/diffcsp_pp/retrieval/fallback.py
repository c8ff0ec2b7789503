"""Fallback when no training template has the query's count pattern: enumerated symmetry templates.

Rule (documented in :meth:`diffcsp_pp.DiffCSPPP.predict`), using the model's ``template_stats.json``
(how often each space group + Wyckoff pattern occurred in training):

1. **Training patterns that can hold the composition.** Every species-free training pattern
   (``"221:1a,1b,3c"``) whose orbits can be shared out among the query's elements so that each
   element gets its count times z (z = total atoms of the pattern / atoms of the formula, the cell
   at most ``max_atoms``). Ranked by training frequency of the pattern, then fewer atoms, fewer
   orbits, the key. Orbits are given to elements largest multiplicity first, each to the first
   element (formula order) with room; the first complete sharing is used.
2. **Otherwise, enumeration in the training space groups.** Space groups ranked by their total
   training frequency; in each, the smallest z admitting a Wyckoff assignment
   (:func:`~diffcsp_pp.symmetry.enumerate.wyckoff_assignments`) and, at that z, the assignment
   with the fewest orbits (then enumeration order). One template per space group.
   Under either rule, a sharing or assignment whose orbits always have more symmetry than its
   group (:func:`~diffcsp_pp.symmetry.enumerate.realizes_space_group`) is skipped.
3. Nothing found (or no statistics): ``ValueError``. P1 is never used unless it is itself a
   training pattern ranked by these rules.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EnumeratedTemplate:
    """One fallback template: ``sites`` [(element, label)], z, and how it was found."""

    space_group: int
    sites: list
    formula_units: int
    score: float  # training count of the pattern (rule 1) or of the space group (rule 2)
    rule: str  # "training_pattern" or "space_group_enumeration"


def _species_free_patterns(pattern_counts: Mapping[str, int]) -> list[tuple[int, list[str], int]]:
    from ..data.template_stats import TemplateStats

    return [(sg, list(labels), count) for sg, labels, count in TemplateStats.of(pattern_counts).patterns()]


def _share(labels: list[str], mults: list[int], target: dict[str, int]) -> list[tuple[str, str]] | None:
    """Give each orbit to an element so that the multiplicities add up to ``target`` (backtracking)."""
    order = sorted(range(len(labels)), key=lambda i: -mults[i])
    elements = list(target)
    left = dict(target)
    chosen: list[str | None] = [None] * len(labels)
    # (orbit position, counts still to place) known to have no completion; without it, orbits of
    # equal multiplicity are permuted among the elements over and over before a dead end
    # (minutes for Sr2FeCuSO3 against a 20-orbit pattern)
    dead: set[tuple] = set()

    def go(pos: int) -> bool:
        if pos == len(order):
            return all(v == 0 for v in left.values())
        state = (pos, *left.values())
        if state in dead:
            return False
        i = order[pos]
        for el in elements:
            if left[el] >= mults[i]:
                left[el] -= mults[i]
                chosen[i] = el
                if go(pos + 1):
                    return True
                left[el] += mults[i]
        dead.add(state)
        return False

    if not go(0):
        return None
    return [(chosen[i], labels[i]) for i in order]


def enumerated_templates(composition: Mapping[str, int], pattern_counts: Mapping[str, int], limit: int,
                         max_atoms: int = 200) -> list[EnumeratedTemplate]:
    """Up to ``limit`` ranked fallback templates for a composition (see the module docstring)."""
    from ..symmetry.enumerate import realizes_space_group, wyckoff_assignments
    from ..symmetry.wyckoff import wyckoff_position

    per_unit = sum(int(v) for v in composition.values())
    patterns = _species_free_patterns(pattern_counts)
    found = []
    for sg, labels, count in patterns:
        try:
            mults = [wyckoff_position(sg, lab).multiplicity for lab in labels]
        except ValueError:
            continue
        total = sum(mults)
        if total % per_unit or total > max_atoms:
            continue
        z = total // per_unit
        sites = _share(labels, mults, {el: int(n) * z for el, n in composition.items()})
        if sites is not None:
            found.append((-count, total, len(labels), f"{sg}:{','.join(labels)}",
                          EnumeratedTemplate(sg, sites, z, float(count), "training_pattern")))
    ranked = (item[-1] for item in sorted(found, key=lambda t: t[:4]))
    usable = list(itertools.islice((e for e in ranked if realizes_space_group(e.space_group, e.sites)), limit))
    if usable:
        return usable

    group_freq: dict[int, int] = defaultdict(int)
    for sg, _, count in patterns:
        group_freq[sg] += count
    out = []
    for sg in sorted(group_freq, key=lambda g: (-group_freq[g], g)):
        for z in range(1, max_atoms // per_unit + 1):
            options = [a for a in wyckoff_assignments(sg, {el: int(n) * z for el, n in composition.items()}, limit=200)
                       if realizes_space_group(sg, a)]
            if options:
                best = min(range(len(options)), key=lambda i: (len(options[i]), i))
                out.append(EnumeratedTemplate(sg, options[best], z, float(group_freq[sg]), "space_group_enumeration"))
                break
        if len(out) >= limit:
            break
    return out
