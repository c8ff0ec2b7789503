"""Wyckoff assignments compatible with a composition, and formula parsing.

An assignment gives every atom of the conventional cell an orbit: for each element, a multiset of
Wyckoff positions whose multiplicities add up to the element's count. A position without free
parameters (``dof == 0``) is a single set of points, so it can hold at most one orbit in the whole
crystal; positions with free parameters can hold any number.

Not every such assignment can have its space group: orbits can together be invariant under more
operations than the group's for *every* lattice and coordinates (MoS2 as Mo:2a S:2c S:2d in P6₃/mmc
is invariant under the translation (0, 0, ½), so it is always P6/mmm with half the cell; Pt on 4a
and 4b of Fm-3m is always simple cubic). :func:`realizes_space_group` tells them apart; the
consumers of the enumeration skip the assignments that fail it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .families import check_space_group
from .templates import atomic_number, build_template
from .wyckoff import wyckoff_positions

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def parse_formula(formula: str) -> dict[str, int]:
    """``"Sr2Ti2O6"`` -> ``{"Sr": 2, "Ti": 2, "O": 6}``; ValueError for malformed formulas or unknown
    elements. Parentheses and fractional counts are not accepted (cells hold whole atoms)."""
    text = str(formula).strip().replace(" ", "")
    if not text or _TOKEN.sub("", text):
        raise ValueError(f"malformed formula {formula!r}: expected element symbols with integer counts, e.g. SrTiO3")
    counts: dict[str, int] = {}
    for symbol, number in _TOKEN.findall(text):
        atomic_number(symbol)  # raises for unknown elements
        n = int(number) if number else 1
        if n < 1:
            raise ValueError(f"malformed formula {formula!r}: count of {symbol} must be >= 1")
        counts[symbol] = counts.get(symbol, 0) + n
    return counts


def wyckoff_assignments(
    space_group: int, composition: Mapping[str, int], limit: int = 10_000
) -> list[list[tuple[str, str]]]:
    """All assignments ``[(element, "4e"), ...]`` of a composition (atoms per conventional cell).

    Elements keep the order of ``composition``; within an element, positions are listed general
    position first (pyxtal order). At most ``limit`` assignments are returned (the search stops there).
    """
    number = check_space_group(space_group)
    positions = wyckoff_positions(number)
    elements = list(composition)
    for el in elements:
        if int(composition[el]) < 1:
            raise ValueError(f"count of {el} must be >= 1, got {composition[el]}")
    results: list[list[tuple[str, str]]] = []

    def per_element(count: int, start: int, used: frozenset, chosen: list):
        """Multisets of positions (index >= start) adding up to count, avoiding used fixed ones."""
        if count == 0:
            yield list(chosen), used
            return
        for idx in range(start, len(positions)):
            wp = positions[idx]
            if wp.multiplicity > count or (wp.dof == 0 and wp.letter in used):
                continue
            chosen.append(wp.label)
            next_used = used | {wp.letter} if wp.dof == 0 else used
            # a free position may repeat (same idx again); a fixed one may not
            yield from per_element(count - wp.multiplicity, idx if wp.dof > 0 else idx + 1, next_used, chosen)
            chosen.pop()

    # (element index, fixed positions taken) from which no completion exists: without this memo an
    # element that fits nowhere is retried under every placement of the elements before it
    # (exponential in the number of elements; minutes for Sr2FeCuSO3 in some groups).
    dead: set[tuple[int, frozenset]] = set()

    def over_elements(i: int, used: frozenset, acc: list):
        if len(results) >= limit:
            return
        if i == len(elements):
            results.append(list(acc))
            return
        if (i, used) in dead:
            return
        before = len(results)
        el = elements[i]
        for labels, now_used in per_element(int(composition[el]), 0, used, []):
            acc.extend((el, label) for label in labels)
            over_elements(i + 1, now_used, acc)
            del acc[len(acc) - len(labels):]
            if len(results) >= limit:
                return
        if len(results) == before:
            dead.add((i, used))

    over_elements(0, frozenset(), [])
    return results


#: Volume per atom (Å³) of the generic cells of :func:`realizes_space_group`.
_GENERIC_VOLUME_PER_ATOM = 15.0


def realizes_space_group(space_group: int, sites, symprec: float = 1e-3, tries: int = 2, seed: int = 0) -> bool:
    """Whether a Wyckoff assignment ``[(element, label), ...]`` can have exactly its space group.

    Builds the crystal with a generic lattice of the group's family and uniform random free
    coordinates (fixed seed) and asks spglib for its group: a generic realisation has only the
    symmetry the orbits force on every realisation, so a supergroup here means the assignment can
    never give the group (see the module docstring). ``tries`` generic draws, True at the first that
    has the group (a draw can only fall on special values by chance, with probability ~0).
    """
    import numpy as np
    from pymatgen.core import Lattice, Structure

    from .analyze import detect_space_group
    from .families import project_k
    from .lattice_k import lattice_from_k

    template = build_template(space_group, sites)
    rng = np.random.default_rng([int(seed), int(template.space_group)])
    for _ in range(tries):
        k = project_k(rng.normal(0.0, 0.2, 6), template.space_group)
        structure = Structure(Lattice(lattice_from_k(k)), template.atom_species, template.random_frac_coords(rng))
        structure.scale_lattice(_GENERIC_VOLUME_PER_ATOM * template.num_atoms)
        if detect_space_group(structure, symprec) == template.space_group:
            return True
    return False


def formula_unit_multiples(space_group: int, composition: Mapping[str, int], max_atoms: int = 200) -> list[int]:
    """Multiples Z of a (reduced) composition, up to ``max_atoms`` atoms, that admit an assignment."""
    per_unit = sum(int(v) for v in composition.values())
    return [
        z for z in range(1, max_atoms // per_unit + 1)
        if wyckoff_assignments(space_group, {el: int(n) * z for el, n in composition.items()}, limit=1)
    ]
