"""Retrieval: candidate templates for a composition, ranked, with their elements substituted.

Candidates are the training crystals whose sorted multiset of per-element atom counts (conventional
cell) equals the query's counts times z, z = 1, 2, ... (up to the largest template). They are
ranked by the scorer on the composition fingerprints (:meth:`~.scorer.Scorer.rank`: by score,
the query's own composition first if the scorer says so; ties: index order), and the top ``top_k``
**distinct structures** are returned (by default): a candidate whose substituted template has the
space group and cell size of a better-ranked returned one and matches it under the benchmark's
StructureMatcher (stol 0.5, ltol 0.3, 10°, the CSP match criterion) is skipped — the same prototype
often sits in the training set many times, under other elements or another origin choice of its
Wyckoff positions. Templates in different space groups are always different answers (a tetragonal
distortion of a cubic perovskite may match it within the tolerances, but it is another phase).
Only the best ``DISTINCT_SCAN`` candidates are looked at, so a composition with fewer distinct
structures among them gets fewer. Each comes with its substitution map and the substituted
template as a
:class:`~diffcsp_pp.symmetry.analyze.SymmetryInfo` (space group, Wyckoff ops and anchors, the
query's species, the template's k and coordinates) ready for refinement or as a "template only"
prediction (:meth:`~diffcsp_pp.symmetry.analyze.SymmetryInfo.to_structure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .index import TemplateIndex
from .scorer import Scorer
from .substitution import SUBSTITUTION_PROPERTIES, substitution_map

#: Candidates looked at, best first, for the ``top_k`` distinct structures of :func:`retrieve`.
DISTINCT_SCAN = 200


@dataclass(frozen=True)
class Candidate:
    """One ranked template.

    Attributes:
        rank: 1 = best.
        score: the scorer's value (higher = better; an MLP probability or minus a distance).
        row: the template's row in the index.
        material_id: the template's training material id.
        formula_units: z, the multiple of the query formula the template cell holds.
        template_space_group: the template's space group (kept by the prediction).
        template_wyckoff: ``"Ba:1a Ti:1b O:3c"``, the template's own species and positions.
        substitution: template element -> query element.
        info: the substituted template (SymmetryInfo with the template's k and coordinates).
    """

    rank: int
    score: float
    row: int
    material_id: str
    formula_units: int
    template_space_group: int
    template_wyckoff: str
    substitution: dict
    info: object

    def provenance(self) -> dict:
        """JSON-ready description (the keys :meth:`DiffCSPPP.predict` puts in ``properties``)."""
        return {"source": "template", "rank": self.rank, "score": float(self.score), "template": self.material_id,
                "template_space_group": self.template_space_group, "template_wyckoff": self.template_wyckoff,
                "substitution": dict(self.substitution), "formula_units": self.formula_units}


def substituted_info(index: TemplateIndex, row: int, mapping: Mapping[str, str]):
    """Template ``row`` with its elements replaced through ``mapping``, as a SymmetryInfo."""
    from ..symmetry.analyze import SymmetryInfo
    from ..symmetry.templates import _symbol, build_template
    from ..symmetry.wyckoff import expand_orbits

    labels, zs, coords = index.orbits(row)
    sg = int(index.space_group[row])
    tpl = build_template(sg, [(mapping[_symbol(z)], lab) for z, lab in zip(zs, labels, strict=True)])
    x = np.zeros((tpl.num_atoms, 3))
    x[np.unique(tpl.anchor_idx)] = coords
    frac = expand_orbits(x, tpl.wyckoff_ops, tpl.anchor_idx)
    return SymmetryInfo(space_group=sg, wyckoff_letters=tpl.wyckoff_letters, species=tpl.species,
                        atom_types=tpl.atom_types, wyckoff_ops=tpl.wyckoff_ops, anchor_idx=tpl.anchor_idx,
                        k=np.array(index.k[row], dtype=np.float64), frac_coords=frac,
                        structure_id=str(index.material_id[row]) or None,
                        symprec=float(index.meta.get("sources", [{}])[0].get("symprec", 0.1) or 0.1))


def query_features(index: TemplateIndex, composition: Mapping[str, int]) -> np.ndarray:
    """The standardised Magpie fingerprint [132] of a composition (with the index's scaler)."""
    from .fingerprints import composition_features

    return index.standardizer(composition_features([dict(composition)]))[0]


def _matcher():
    """The CSP benchmark's StructureMatcher: two templates it matches are the same structure."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from ..evaluate.csp import MATCHER_SETTINGS

    return StructureMatcher(**MATCHER_SETTINGS)


def _reduced(info, memo: list):
    """The primitive, Niggli-reduced structure of a template (what ``StructureMatcher.fit`` reduces
    to, in its order), computed once and kept in ``memo``."""
    if not memo:
        memo.append(info.to_structure().get_primitive_structure().get_reduced_structure())
    return memo[0]


def retrieve(index: TemplateIndex, scorer: Scorer, composition: Mapping[str, int], top_k: int = 1,
             max_atoms: int | None = None, features: np.ndarray | None = None,
             properties: tuple[str, ...] = SUBSTITUTION_PROPERTIES, exclude: set | None = None,
             distinct: bool = True) -> list[Candidate]:
    """The ``top_k`` best templates for a composition (fewer if fewer candidates; [] if none).

    Args:
        composition: element -> count (the formula as given; its multiples are allowed).
        features: the query's standardised fingerprint (computed when not given).
        exclude: material ids never to return (e.g. the query itself in a leave-one-out test).
        distinct: skip a candidate whose substituted structure has the space group and cell size
            of a better-ranked returned one and matches it (StructureMatcher with the CSP
            benchmark's settings); ranks stay 1, 2, ... over the returned ones.
    """
    from ..evaluate.novelty import same_structure
    from ..symmetry.templates import _symbol

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    found = index.candidates(composition, max_atoms)
    if exclude:
        found = [(i, z) for i, z in found if str(index.material_id[i]) not in exclude]
    if not found:
        return []
    rows = np.array([i for i, _ in found])
    q = query_features(index, composition) if features is None else features
    order, scores = scorer.rank(q, index.features[rows])
    matcher = _matcher() if distinct and top_k > 1 else None
    out, kept = [], []  # kept: ((space group, atoms), info, [reduced structure]) (distinct only)
    for o in order[:DISTINCT_SCAN] if matcher is not None else order:
        if len(out) == top_k:
            break
        row, z = found[o]
        mapping = substitution_map(index.element_counts(row), {el: int(n) * z for el, n in composition.items()},
                                   properties)
        labels, zs, _ = index.orbits(row)
        info = substituted_info(index, row, mapping)
        if matcher is not None:
            # only a template with the same space group and cell size can be the same structure
            cell, mine = (int(index.space_group[row]), int(index.num_atoms[row])), []
            if any(other_cell == cell and same_structure(matcher, _reduced(info, mine), _reduced(other, memo))
                   for other_cell, other, memo in kept):
                continue
            kept.append((cell, info, mine))
        out.append(Candidate(rank=len(out) + 1, score=float(scores[o]), row=int(row),
                             material_id=str(index.material_id[row]),
                             formula_units=int(z), template_space_group=int(index.space_group[row]),
                             template_wyckoff=" ".join(f"{_symbol(zz)}:{lab}" for zz, lab in zip(zs, labels, strict=True)),
                             substitution=mapping, info=info))
    return out
