"""Uniqueness, novelty and Wyckoff templates of generated crystals (not in the paper; see
:mod:`diffcsp_pp.evaluate.gen`): StructureMatcher within buckets of equal reduced formula and
reduced-cell size, and the ``"<sg>:<letters>"`` template of a crystal."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np

#: StructureMatcher settings of uniqueness and novelty (pymatgen's defaults).
MATCHER_SETTINGS = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}


def reduced_cell(structure):
    """The cell StructureMatcher compares (Niggli, then primitive), or None if it cannot be built."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return structure.get_reduced_structure("niggli").get_primitive_structure()
    except Exception:  # noqa: BLE001
        return None


def wyckoff_template(structure, symprec: float) -> tuple[int, str]:
    """(space group, Wyckoff template) of a structure: ``"<sg>:<letters>"``, the sorted Wyckoff
    letters of its orbits (one per orbit, elements ignored); (0, "") if spglib finds no symmetry."""
    from ..symmetry.analyze import structure_dataset

    try:
        ds = structure_dataset(structure, symprec)
    except Exception:  # noqa: BLE001 - spglib failure: no space group
        ds = None
    if ds is None:
        return 0, ""
    reps = np.unique(np.asarray(ds.equivalent_atoms))
    letters = sorted(str(ds.wyckoffs[i]) for i in reps)
    return int(ds.number), f"{int(ds.number)}:{','.join(letters)}"


def same_structure(matcher, a, b) -> bool:
    """``matcher.fit`` of two cells reduced beforehand (``skip_structure_reduction``: each cell is
    reduced once, not at every comparison); a pair the matcher cannot fit counts as different."""
    try:
        return bool(matcher.fit(a, b, skip_structure_reduction=True))
    except Exception:  # noqa: BLE001 - an unmatchable pair is different
        return False


def match_bucket(job):
    """Uniqueness (vs earlier generated) and novelty (vs training) within one bucket."""
    gen_ids, gen_structs, train_structs = job
    from pymatgen.analysis.structure_matcher import StructureMatcher

    warnings.simplefilter("ignore")
    matcher = StructureMatcher(**MATCHER_SETTINGS)

    unique, novel = [], []
    for k, s in enumerate(gen_structs):
        unique.append(not any(same_structure(matcher, s, gen_structs[j]) for j in range(k)))
        novel.append(not any(same_structure(matcher, s, t) for t in train_structs))
    return gen_ids, unique, novel


def uniqueness_novelty(pool, gen: list[dict], train_formulas, train_sources: list) -> tuple[np.ndarray, np.ndarray]:
    """(unique, novel) boolean arrays over the generated records ``gen`` (their ``reduced`` cells),
    against earlier generated crystals and the training crystals of the same bucket (reduced formula,
    sites of the reduced cell); training cells are reduced only for formulas that were generated."""
    from .crystals import analyze_all

    gen_buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(gen):
        if r.get("parsed") and r.get("reduced") is not None:
            gen_buckets[(r["formula"], len(r["reduced"]))].append(i)
    formulas = {k[0] for k in gen_buckets}
    want = [i for i, f in enumerate(train_formulas) if f in formulas]
    reduced_train = analyze_all(pool, "reduce", [train_sources[i] for i in want], {}, "gen: training cells", 16)
    train_buckets: dict[tuple, list] = defaultdict(list)
    for rec in reduced_train:
        if rec.get("reduced") is not None:
            train_buckets[(rec["formula"], len(rec["reduced"]))].append(rec["reduced"])
    unique = np.zeros(len(gen), dtype=bool)
    novel = np.zeros(len(gen), dtype=bool)
    jobs = []
    for key, ids in gen_buckets.items():
        if len(ids) == 1 and not train_buckets.get(key):
            unique[ids[0]] = novel[ids[0]] = True
        else:
            jobs.append((ids, [gen[i]["reduced"] for i in ids], train_buckets.get(key, [])))
    jobs.sort(key=lambda j: -len(j[0]) * (len(j[0]) + len(j[2])))  # big buckets first
    for ids, u, nv in pool.map(match_bucket, jobs, "gen: matching", sizes=[len(j[0]) for j in jobs]):
        unique[ids] = u
        novel[ids] = nv
    return unique, novel


def template_novelty(gen_templates, parsed: np.ndarray, train_templates_all, train_parsed) -> dict:
    """Wyckoff-template statistics: per generated crystal whether it has a template and whether that
    is in no training crystal; the distinct templates and the novel ones."""
    train_templates = {t for t, ok in zip(train_templates_all, train_parsed, strict=True) if ok and t}
    templates = np.array([t or "" for t in gen_templates], dtype=object)
    has_template = parsed & (templates != "")
    novel = np.array([bool(t) and t not in train_templates for t in templates])
    distinct = set(templates[has_template])
    return {"templates": templates, "has_template": has_template, "novel": novel, "distinct": distinct,
            "distinct_novel": {t for t in distinct if t not in train_templates}, "training": train_templates}
