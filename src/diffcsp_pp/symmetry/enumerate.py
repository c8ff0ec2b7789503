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

import math
import re
from collections.abc import Mapping

from .families import check_space_group
from .templates import build_template
from .wyckoff import wyckoff_positions

#: Largest denominator a fractional formula is scaled by to whole atoms (``Fe0.5O`` -> ``FeO2``).
MAX_FORMULA_SCALE = 12
_ZERO_COUNT = re.compile(r"[A-Za-z)\]]0+(?:\.0*)?(?![\d.])")


def parse_formula(formula: str) -> dict[str, int]:
    """Element -> whole-atom count of a chemical formula, parsed by pymatgen's ``Composition``.

    Groups are expanded (``"Ca(OH)2"`` -> ``{"Ca": 1, "O": 2, "H": 2}``, ``"Li2Fe(SO4)2"``) and
    fractional counts are scaled by the smallest factor up to :data:`MAX_FORMULA_SCALE` that makes
    them whole (``"Fe0.5O"`` -> ``{"Fe": 1, "O": 2}``; a cell holds whole atoms). Elements keep
    pymatgen's order. ValueError naming the formula for malformed text, unknown elements (``Xx``),
    a zero or non-finite count, counts no small factor makes whole, or a formula longer than the
    ``formula_chars`` limit (:mod:`diffcsp_pp.policy`).
    """
    from pymatgen.core import Composition, Element

    from ..policy import check

    text = formula if isinstance(formula, str) else None
    if text is None or not text.strip():
        raise ValueError(f"malformed formula {formula!r}: expected a chemical formula, e.g. SrTiO3 or Ca(OH)2")
    check("formula_chars", len(text), f"length of the formula {text[:40]!r}...")
    try:
        comp = Composition(text.strip())
    except (ValueError, KeyError, TypeError, OverflowError) as err:
        raise ValueError(f"malformed formula {formula!r}: {err}") from None
    for species in comp:
        if not isinstance(species, Element):
            raise ValueError(f"unknown element {getattr(species, 'symbol', str(species))!r} in formula {formula!r}")
    if _ZERO_COUNT.search(text):
        raise ValueError(f"malformed formula {formula!r}: every count must be >= 1 (a count of 0 drops the element)")
    amounts = {str(el): float(n) for el, n in comp.get_el_amt_dict().items()}
    if not amounts or not all(math.isfinite(v) and v > 0 for v in amounts.values()):
        raise ValueError(f"malformed formula {formula!r}: counts must be positive finite numbers")
    for scale in range(1, MAX_FORMULA_SCALE + 1):
        scaled = {el: v * scale for el, v in amounts.items()}
        if all(abs(v - round(v)) <= 1e-6 * max(1.0, v) for v in scaled.values()):
            return {el: int(round(v)) for el, v in scaled.items()}
    raise ValueError(f"formula {formula!r} has counts that no factor up to {MAX_FORMULA_SCALE} makes whole "
                     "(a crystal cell holds whole atoms): give integer counts")


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

    try:
        over_elements(0, frozenset(), [])
    except RecursionError:  # one stack frame per orbit: only absurdly large cells get here
        raise ValueError(f"composition {dict(composition)} is too large to enumerate Wyckoff assignments in space group "
                         f"{number}") from None
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
