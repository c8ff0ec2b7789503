"""Metrics of ab initio generated structures (METHOD §7.3), plus what the paper does not report.

Protocol of the paper, with the differences stated:

- **Validity** of every generated crystal: ``struct_valid`` (all pairs ≥ 0.5 Å, volume ≥ 0.1 Å³),
  ``comp_valid`` (SMACT charge neutrality + Pauling test, alloys and single elements valid, with
  the paper's SMACT14 oxidation states) and ``valid`` = both and a CrystalNN fingerprint that can
  be computed. Fractions over **all** generated crystals; a CIF that cannot be parsed counts as
  invalid. The checks are those of :mod:`~diffcsp_pp.evaluate.validity`. Extra column:
  ``comp_valid_icsd24``, the same test with SMACT ≥ 3's default ICSD24 oxidation states.
- **Coverage** (:func:`coverage`). Structure fingerprint: mean over sites of
  ``CrystalNNFingerprint.from_preset("ops")``. Composition fingerprint: matminer
  ``ElementProperty.from_preset("magpie")`` (132 values, no NaN imputation, as matminer 0.7 did).
  Euclidean distances between generated and reference fingerprints; COV-R is the fraction of
  reference crystals whose nearest generated structure fingerprint is within the structure cutoff
  and whose nearest generated composition fingerprint is within the composition cutoff; COV-P the
  number of generated crystals that meet both conditions against the reference set divided by
  **all** generated crystals (those whose fingerprint failed count in the denominator). The two
  minima are taken independently, as in the official ``compute_cov``. Cutoffs (struct, comp):
  MP-20 (0.4, 10), Carbon-24 (0.2, 4), Perov-5 (0.2, 4); MPTS-52 uses MP-20's (its official config
  points to mp20). Reference crystals whose fingerprint fails are left out of COV-R (the official
  code would crash on them); their number is reported.

  The composition fingerprints are standardised with CDVAE's fixed ``CompScalerMeans/Stds``
  (:mod:`~diffcsp_pp.evaluate.constants`; NaN → 0 after standardisation), as the paper does.
  ``composition_scaling="train"`` standardises with the training set's mean and standard deviation
  instead (a standard deviation of 0 → 1).
- **Property statistics**: Wasserstein-1 distances (``scipy.stats.wasserstein_distance``) between a
  random sample of up to 1,000 **valid** generated crystals and **all** reference crystals, of the
  density (g cm⁻³, ``wdist_density``), the number of distinct elements (``wdist_num_elements``)
  and the property predicted by the paper's model (``wdist_prop``, the paper's d_E): CDVAE's
  DimeNet++ regressor of the dataset (:mod:`~diffcsp_pp.evaluate.property_model`; formation energy
  per atom for MP-20 and MPTS-52, ``heat_ref`` for Perov-5, energy per atom for Carbon-24), for
  generated and reference crystals alike. A second energy column, ``wdist_energy``, uses CHGNet's
  predicted **total energy per atom** (eV/atom, universal potential trained on MPtrj) instead.
  ``metrics["energy_model"]`` says which model gave which column.

  *Differences:* the sample is drawn with a seeded generator (``numpy.random.default_rng(seed)``,
  without replacement; the official code is unseeded) and, when fewer than ``sample_size``
  crystals are valid, all valid crystals are used (the official code aborts); the count is
  reported. Both energy columns are optional (the property model needs its weights, CHGNet time).

Not in the paper:

- ``requested_space_group_rate``: fraction of the generated crystals with a requested space group
  (``manifest.json`` entries' ``space_group``) whose spglib space group at 1e-3 Å equals it.
- Space-group distributions: generated, training and reference crystals, all detected with the
  dataset's spglib tolerance (0.01 Å for Perov-5, else 0.1 Å), as histograms and as
  Jensen–Shannon distances (``scipy.spatial.distance.jensenshannon``, natural log) over the
  space-group numbers 0-230 (0: spglib found none).
- ``uniqueness``: fraction of generated crystals not matched by ``StructureMatcher`` (pymatgen
  defaults: ltol 0.2, stol 0.3, angle_tol 5°, primitive cells, scaled volumes) to an *earlier*
  generated crystal; ``novelty``: fraction not matched to any training crystal;
  ``unique_novel``: both. Only crystals with the same reduced formula and the same number of sites
  in the matcher's reduced (Niggli + primitive) cell are compared: the matcher cannot match any
  other pair (``attempt_supercell=False`` requires equal site counts). Unparsable crystals count
  as neither unique nor novel; denominators are all generated crystals.

- **Wyckoff templates** (the field's measure of how much of the symmetry is copied from training;
  SymmCD found 94 % of DiffCSP++'s templates in the training set): a crystal's template is its
  spglib space group at the dataset's tolerance and the sorted multiset of the Wyckoff letters of
  its orbits (elements ignored), e.g. ``62:c,c,d``. ``novel_template_rate`` is the fraction of
  parsed generated crystals whose template occurs in no training crystal,
  ``distinct_templates`` the number of different templates among them, and
  ``novel_distinct_template_rate`` the fraction of those distinct templates that are novel
  (SymmCD's count). Letters are spglib's in its standard setting; an orbit that a change of origin
  maps to another letter (e.g. 1a ↔ 1b in Pm-3m) is not identified with it, in generated and
  training crystals alike.
- **Stability against a training-set hull (CHGNet)**: ``e_above_hull`` of each valid generated
  crystal is its CHGNet energy per atom (single point, as generated, no relaxation) above the
  convex hull (pymatgen ``PhaseDiagram``) of the **training set's CHGNet energies** in its chemical
  system, so it measures stability against the training crystals as CHGNet sees them — not against
  Materials Project's DFT hull. A crystal whose chemical system lacks an elemental training
  crystal for one of its elements gets none (``counts["hull_no_reference"]``). ``stable_chgnet_hull``:
  fraction of all generated crystals that are valid with e_above_hull ≤ 0 (1e-6 tolerance);
  ``metastable_chgnet_hull``: ≤ 0.1 eV/atom; ``sun_chgnet_hull`` / ``msun_chgnet_hull``: also
  unique and novel (S.U.N. under this definition). ``hull_train_max`` restricts the hull to a
  seeded subset of the training set (fewer competing phases: more crystals look stable).

Modules, by metric family: :mod:`~diffcsp_pp.evaluate.fingerprints` (the featurisers and the NaN
policy), :mod:`~diffcsp_pp.evaluate.crystals` (per-crystal analysis, set caches),
:mod:`~diffcsp_pp.evaluate.coverage`, :mod:`~diffcsp_pp.evaluate.distributions` (W1 distances,
histograms, the property model), :mod:`~diffcsp_pp.evaluate.novelty` (uniqueness, novelty,
templates), :mod:`~diffcsp_pp.evaluate.stability` (CHGNet energies, hull) and
:mod:`~diffcsp_pp.evaluate.generated` (reading the generated crystals); this module combines them
(:func:`evaluate_gen`).

Costs: CrystalNN fingerprints take about 0.1-1 s per crystal, so fingerprints, densities and space
groups of the reference and training files (and the reference property predictions and the
reference and training CHGNet energies) are cached under ``default_cache_dir()/evaluate`` keyed by
the file's content hash (never in the repository).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..parallel import ProcessPool
from .coverage import COMPOSITION_SCALINGS, COV_CUTOFFS, composition_scaler, coverage
from .crystals import STRICT_SYMPREC, analyze_all, set_analysis, stack_fingerprints
from .distributions import (
    crystal_graphs,
    histogram,
    js_distance,
    load_property_model,
    set_property,
    space_group_histogram,
    wdist,
)
from .fingerprints import (
    COMP_FP_DIM,
    STRUCT_FP_DIM,
    composition_fingerprint,
    fit_standardizer,
    standardize,
    structure_fingerprint,
)
from .generated import read_generated
from .novelty import MATCHER_SETTINGS, template_novelty, uniqueness_novelty, wyckoff_template
from .stability import METASTABLE_EHULL, STABLE_TOL, chgnet_energies, energy_model_name, hull_energies, set_energies

#: Default number of valid generated crystals in the property statistics.
DEFAULT_SAMPLE_SIZE = 1000


def dataset_symprec(dataset: str | None) -> float:
    """spglib tolerance of a benchmark's symmetry analysis: 0.01 Å for Perov-5, else 0.1 Å."""
    return 0.01 if dataset == "perov_5" else 0.1


def detect_dataset(path) -> str | None:
    """Benchmark name (``perov_5``, ``mp_20``, ...) of a CSV recognised by its checksum, else None.

    Official files are looked up in the registry; a file a split script derived from them (such as
    ``scripts/mp20_split.py``'s ``data/mp20/select.csv.gz``) is recognised when the ``split.json``
    beside it names the dataset and lists this file's checksum.
    """
    from ..data.registry import find_by_checksum
    from ..data.sources import content_hash

    path = Path(path)
    digest = content_hash(path)
    entry = find_by_checksum(digest)
    if entry is not None:
        return entry.dataset
    return _split_dataset(path, digest)


def _split_dataset(path: Path, digest: str) -> str | None:
    """The dataset a ``split.json`` beside ``path`` records for a file with this checksum, else None."""
    summary = path.parent / "split.json"
    if path.is_dir() or not summary.is_file():
        return None
    try:
        info = json.loads(summary.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), dict):
        return None
    dataset = info.get("dataset")
    return dataset if info["sha256"].get(path.name) == digest and isinstance(dataset, str) else None


@dataclass
class GenRow:
    """Evaluation of one generated crystal (one row of the per-structure CSV)."""

    index: int
    name: str
    formula: str | None
    num_atoms: int | None
    parsed: bool
    struct_valid: bool
    comp_valid: bool  # SMACT14 oxidation states (the paper's)
    comp_valid_icsd24: bool  # ICSD24 oxidation states (SMACT >= 3's default)
    fingerprint_ok: bool
    valid: bool
    density: float | None
    num_elements: int | None
    space_group: int | None  # at the dataset's symprec
    space_group_strict: int | None  # at 1e-3 Å
    requested_space_group: int | None
    unique: bool
    novel: bool
    wyckoff_template: str | None = None  # "<sg>:<sorted Wyckoff letters>" at the dataset's symprec
    novel_template: bool | None = None  # template in no training crystal
    in_property_sample: bool = False
    property: float | None = None  # the paper's DimeNet++ property model (property sample only)
    energy_per_atom: float | None = None  # CHGNet 0.3.0, eV/atom
    e_above_hull: float | None = None  # CHGNet energy above the training set's CHGNet hull, eV/atom


def evaluate_gen(
    generated: Sequence,
    reference,
    training,
    *,
    dataset: str | None = None,
    cutoffs: tuple[float, float] | None = None,
    requested: dict[str, int] | None = None,
    workers: int = 1,
    energy: bool = True,
    property_model="auto",
    property_models_dir=None,
    composition_scaling: str = "cdvae",
    hull: bool = True,
    hull_train_max: int | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    symprec: float | None = None,
    cache_dir=None,
    progress: bool = True,
):
    """Generation metrics (METHOD §7.3 plus uniqueness, novelty, templates, stability, space groups).

    Args:
        generated: (name, Structure | CIF text | None) per generated crystal, in generation order.
        reference: the reference (test) set: a CSV path / CIF folder, or a sequence of Structures or
            CIF texts.
        training: the training set, in the same forms.
        dataset: ``perov_5``, ``mp_20``, ``carbon_24`` (or ``mpts_52``): chooses the COV cutoffs, the
            space-group tolerance and the property model; default: recognised from the reference
            (then training) file checksum.
        cutoffs: (structure, composition) COV cutoffs overriding the dataset's.
        requested: name -> requested space group (from ``manifest.json``); None: no rate.
        workers: processes.
        energy: compute CHGNet energies (``wdist_energy``) and, with ``hull``, the training-set hull.
        property_model: the paper's d_E model: ``"auto"`` (the dataset's CDVAE DimeNet++ model when
            its weights are found, else none, with the reason in ``metrics["notes"]``), ``None`` /
            ``"none"``, or a model name (``mp20``, ``perovskite``, ``carbon``) or folder that must load.
        property_models_dir: folder of the property models (default: see
            :func:`~diffcsp_pp.evaluate.property_model.default_property_models_dir`).
        composition_scaling: ``"cdvae"`` (CDVAE's fixed constants, the paper's) or ``"train"``.
        hull: with ``energy``, e_above_hull of the valid generated crystals against the training
            set's CHGNet hull, and the stability / S.U.N. rates.
        hull_train_max: at most this many training crystals (a seeded subset) in the hull; None: all.
        sample_size: valid generated crystals in the property statistics (fewer if fewer are valid).
        seed: seed of that sample and of the hull subset.
        symprec: spglib tolerance of the space-group distributions and templates (default: the
            dataset's).
        cache_dir: where reference/training analyses are cached (None: no cache).

    Returns:
        (metrics dict, list[GenRow]).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    generated = list(generated)
    if not generated:
        raise ValueError("no generated crystals to evaluate")
    if composition_scaling not in COMPOSITION_SCALINGS:
        raise ValueError(f"composition_scaling must be one of {COMPOSITION_SCALINGS}, got {composition_scaling!r}")
    if hull_train_max is not None and int(hull_train_max) < 1:
        raise ValueError(f"hull_train_max must be >= 1, got {hull_train_max}")
    if dataset is None:
        for src in (reference, training):
            if isinstance(src, (str, os.PathLike)) and Path(src).exists():
                dataset = detect_dataset(src)
                if dataset:
                    break
    if cutoffs is None:
        if dataset not in COV_CUTOFFS:
            raise ValueError(f"unknown dataset {dataset!r}: pass dataset= one of {', '.join(COV_CUTOFFS)} or cutoffs=")
        cutoffs = COV_CUTOFFS[dataset]
    symprec = dataset_symprec(dataset) if symprec is None else float(symprec)
    if energy:
        import importlib.util

        if importlib.util.find_spec("chgnet") is None:
            raise ImportError("energies need CHGNet: pip install chgnet (or evaluate without energies)")
    sample_size = int(sample_size)
    if sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    notes: list[str] = []
    prop_model, why_not = load_property_model(property_model, dataset, property_models_dir)
    if prop_model is None and property_model not in (None, "none"):
        notes.append(f"no d_E with the paper's property model: {why_not}")

    names = [str(n) for n, _ in generated]
    with ProcessPool(workers, progress) as pool:
        t = time.perf_counter()
        gen = analyze_all(pool, "generated", [s for _, s in generated], {"symprec": symprec, "keep_structure": True},
                           "gen: generated", 4)
        timings["generated"] = time.perf_counter() - t
        t = time.perf_counter()
        ref, ref_sources = set_analysis(pool, "reference", reference, symprec, cache_dir, "gen: reference")
        timings["reference"] = time.perf_counter() - t
        t = time.perf_counter()
        train, train_sources = set_analysis(pool, "training", training, symprec, cache_dir, "gen: training")
        timings["training"] = time.perf_counter() - t

        # uniqueness and novelty, bucketed by (reduced formula, sites of the reduced cell)
        t = time.perf_counter()
        unique, novel = uniqueness_novelty(pool, gen, train["formula"], train_sources)
        timings["matching"] = time.perf_counter() - t

        # validity
        parsed = np.array([bool(r.get("parsed")) for r in gen])
        struct_valid = np.array([bool(r.get("struct_valid")) for r in gen])
        comp_valid = np.array([bool(r.get("comp_valid")) for r in gen])
        comp_valid_icsd24 = np.array([bool(r.get("comp_valid_icsd24")) for r in gen])
        fp_ok = np.array([r.get("struct_fp") is not None for r in gen])
        valid = struct_valid & comp_valid & fp_ok
        n = len(gen)

        # property statistics on a seeded sample of valid crystals
        valid_idx = np.flatnonzero(valid)
        rng = np.random.default_rng(seed)
        k = min(sample_size, len(valid_idx))
        sample = np.sort(rng.choice(valid_idx, size=k, replace=False)) if k else np.array([], dtype=np.int64)
        in_sample = np.zeros(n, dtype=bool)
        in_sample[sample] = True
        props = np.full(n, np.nan)
        ref_props = None
        if prop_model is not None:
            t = time.perf_counter()
            if k:
                props[sample] = prop_model.predict_graphs(crystal_graphs(pool, [gen[i]["structure"] for i in sample],
                                                                  "d_E: generated graphs"))
            ref_props = set_property(pool, prop_model, ref_sources, reference, cache_dir, "d_E: reference graphs")
            timings["property_model"] = time.perf_counter() - t

    # coverage
    mean, std = composition_scaler(composition_scaling, train["comp_fp"][train["comp_ok"]])
    g_struct, _ = stack_fingerprints(gen, "struct_fp", STRUCT_FP_DIM)
    g_comp, g_comp_ok = stack_fingerprints(gen, "comp_fp", COMP_FP_DIM)
    g_use = fp_ok & g_comp_ok
    r_use = ref["struct_ok"] & ref["comp_ok"]
    cov = coverage(g_struct[g_use], standardize(g_comp[g_use], mean, std),
                   ref["struct_fp"][r_use], standardize(ref["comp_fp"][r_use], mean, std),
                   cutoffs[0], cutoffs[1], num_generated=n)

    g_density = np.array([r.get("density", np.nan) for r in gen], dtype=float)
    g_nelem = np.array([r.get("num_elements", 0) for r in gen], dtype=float)
    energies = np.full(n, np.nan)
    e_hull = np.full(n, np.nan)
    ref_energy = None
    chgnet_name = None
    hull_info = None
    if energy:
        t = time.perf_counter()
        chgnet_name = energy_model_name()
        need = np.flatnonzero(valid) if hull else sample
        if len(need):
            energies[need] = chgnet_energies([gen[i]["structure"] for i in need], progress=progress,
                                             desc="energy: generated")
        ref_energy = set_energies(ref_sources, reference, cache_dir, np.arange(len(ref_sources)), progress,
                                   "energy: reference")
        timings["energy"] = time.perf_counter() - t
        if hull:
            t = time.perf_counter()
            n_train = len(train_sources)
            hull_idx = np.arange(n_train)
            if hull_train_max is not None and int(hull_train_max) < n_train:
                hull_idx = np.sort(np.random.default_rng(seed).choice(n_train, size=int(hull_train_max), replace=False))
            train_energy = set_energies(train_sources, training, cache_dir, hull_idx, progress, "energy: training (hull)")
            timings["energy_training"] = time.perf_counter() - t
            t = time.perf_counter()
            from pymatgen.core import Composition

            train_comps = [None] * n_train
            for i in hull_idx:  # the reduced formula is enough: the hull works per atom
                if train["parsed"][i]:
                    train_comps[i] = Composition(str(train["formula"][i]))
            gen_comps = [gen[i]["structure"].composition.element_composition if valid[i] else None for i in range(n)]
            e_hull = hull_energies(gen_comps, energies, train_comps, train_energy)
            timings["hull"] = time.perf_counter() - t
            hull_info = {"training_crystals": int(len(hull_idx)),
                         "training_energies_failed": int(len(hull_idx) - np.isfinite(train_energy[hull_idx]).sum())}
    stable = valid & (e_hull <= STABLE_TOL)
    metastable = valid & (e_hull <= METASTABLE_EHULL)
    has_hull = np.isfinite(e_hull)
    ref_ok = ref["parsed"]

    # Wyckoff templates
    tpl = template_novelty([r.get("template") for r in gen], parsed, train["template"], train["parsed"])
    g_template, has_template, novel_template = tpl["templates"], tpl["has_template"], tpl["novel"]
    distinct, distinct_novel, train_templates = tpl["distinct"], tpl["distinct_novel"], tpl["training"]

    # space groups
    gen_sg = [r["space_group"] for r in gen if r.get("parsed")]
    req_rate = None
    if requested is not None:
        asked = [(i, requested[nm]) for i, nm in enumerate(names) if requested.get(nm)]
        if asked:
            req_rate = sum(gen[i].get("space_group_strict") == sg for i, sg in asked) / len(asked)

    def opt(x):
        return None if not np.isfinite(x) else float(x)

    rows = [
        GenRow(
            index=i, name=names[i], formula=r.get("formula"), num_atoms=r.get("num_atoms"), parsed=bool(parsed[i]),
            struct_valid=bool(struct_valid[i]), comp_valid=bool(comp_valid[i]),
            comp_valid_icsd24=bool(comp_valid_icsd24[i]), fingerprint_ok=bool(fp_ok[i]), valid=bool(valid[i]),
            density=opt(g_density[i]), num_elements=r.get("num_elements"), space_group=r.get("space_group"),
            space_group_strict=r.get("space_group_strict"),
            requested_space_group=(requested or {}).get(names[i]),
            unique=bool(unique[i]), novel=bool(novel[i]),
            wyckoff_template=g_template[i] or None, novel_template=bool(novel_template[i]) if has_template[i] else None,
            in_property_sample=bool(in_sample[i]), property=opt(props[i]),
            energy_per_atom=opt(energies[i]), e_above_hull=opt(e_hull[i]),
        )
        for i, r in enumerate(gen)
    ]

    histograms = {
        "space_group": {"generated": space_group_histogram(gen_sg), "training": space_group_histogram(train["space_group"][train["parsed"]]),
                        "reference": space_group_histogram(ref["space_group"][ref_ok])},
        "density": histogram(g_density[sample], ref["density"][ref_ok]),
        "num_elements": histogram(g_nelem[sample], ref["num_elements"][ref_ok], integer=True),
    }
    if prop_model is not None:
        histograms["property"] = histogram(props[sample], ref_props[ref_ok])
    if energy:
        histograms["energy_per_atom"] = histogram(energies[sample], ref_energy[ref_ok])
    rate = (lambda mask: float(mask.mean())) if energy and hull else (lambda mask: None)
    metrics = {
        "dataset": dataset,
        "struct_valid": float(struct_valid.mean()),
        "comp_valid": float(comp_valid.mean()),
        "comp_valid_icsd24": float(comp_valid_icsd24.mean()),
        "valid": float(valid.mean()),
        **cov,
        "wdist_density": wdist(g_density[sample], ref["density"][ref_ok]) if k else None,
        "wdist_num_elements": wdist(g_nelem[sample], ref["num_elements"][ref_ok]) if k else None,
        "wdist_prop": (wdist(props[sample], ref_props[ref_ok]) if k else None) if prop_model is not None else None,
        "wdist_energy": (wdist(energies[sample], ref_energy[ref_ok]) if k else None) if energy else None,
        "energy_model": {
            "wdist_prop": None if prop_model is None else prop_model.describe() + " (the paper's d_E)",
            "wdist_energy": chgnet_name,
            "e_above_hull": None if not (energy and hull) else
            "CHGNet single-point energy per atom above the convex hull of the training set's CHGNet energies",
        },
        "property_sample_size": int(k),
        "requested_space_group_rate": req_rate,
        "space_group_js_distance_training": js_distance(gen_sg, train["space_group"][train["parsed"]]),
        "space_group_js_distance_reference": js_distance(gen_sg, ref["space_group"][ref_ok]),
        "uniqueness": float(unique.mean()),
        "novelty": float(novel.mean()),
        "unique_novel": float((unique & novel).mean()),
        "valid_unique_novel": float((valid & unique & novel).mean()),
        "novel_template_rate": float(novel_template[has_template].mean()) if has_template.any() else None,
        "distinct_templates": len(distinct),
        "novel_distinct_template_rate": len(distinct_novel) / len(distinct) if distinct else None,
        "stable_chgnet_hull": rate(stable),
        "metastable_chgnet_hull": rate(metastable),
        "sun_chgnet_hull": rate(stable & unique & novel),
        "msun_chgnet_hull": rate(metastable & unique & novel),
        "counts": {
            "generated": n, "parsed": int(parsed.sum()), "struct_valid": int(struct_valid.sum()),
            "comp_valid": int(comp_valid.sum()), "comp_valid_icsd24": int(comp_valid_icsd24.sum()),
            "fingerprint_ok": int(fp_ok.sum()), "valid": int(valid.sum()),
            "generated_in_coverage": int(g_use.sum()),
            "reference": len(ref_ok), "reference_in_coverage": int(r_use.sum()),
            "reference_fingerprint_failed": int(len(ref_ok) - r_use.sum()),
            "training": len(train["parsed"]),
            "requested_space_group": None if requested is None else sum(1 for nm in names if (requested or {}).get(nm)),
            "property_failed": (int(k - np.isfinite(props[sample]).sum()) if prop_model is not None else None),
            "reference_property_failed": (int((~np.isfinite(ref_props[ref_ok])).sum())
                                          if prop_model is not None else None),
            "energy_failed": (int(k - np.isfinite(energies[sample]).sum()) if energy else None),
            "unique": int(unique.sum()), "novel": int(novel.sum()),
            "with_template": int(has_template.sum()), "novel_template": int(novel_template[has_template].sum()),
            "distinct_novel_templates": len(distinct_novel), "training_templates": len(train_templates),
            "hull_evaluated": int(has_hull.sum()) if energy and hull else None,
            "hull_no_reference": (int((valid & np.isfinite(energies) & ~has_hull).sum()) if energy and hull else None),
            "stable": int(stable.sum()) if energy and hull else None,
            "metastable": int(metastable.sum()) if energy and hull else None,
        },
        "histograms": histograms,
        "notes": notes,
        "protocol": {
            "cov_cutoffs": {"struct": cutoffs[0], "comp": cutoffs[1]},
            "structure_fingerprint": "mean over sites of CrystalNNFingerprint.from_preset('ops')",
            "composition_fingerprint": "ElementProperty.from_preset('magpie', impute_nan=False)",
            "composition_scaling": ("CDVAE's fixed CompScalerMeans/Stds (the paper's); NaN -> 0"
                                    if composition_scaling == "cdvae" else
                                    "mean/std of the training set's composition fingerprints; NaN -> 0, std 0 -> 1"),
            "validity": ["smact_composition (SMACT14 oxidation states)", "min_distance_0.5A", "volume_0.1A3",
                         "crystalnn_fingerprint"],
            "property_sample": {"size": sample_size, "seed": seed, "population": "valid generated",
                                "replace": False, "reference": "all reference crystals"},
            "property_model": None if prop_model is None else {
                "name": prop_model.name, "target": prop_model.target, "weights_sha256": prop_model.weights_hash,
                "graph": "CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False), periodic images"},
            "hull": None if not (energy and hull) else {
                **(hull_info or {}), "subset_seed": seed if hull_train_max is not None else None,
                "stable": f"valid and e_above_hull <= {STABLE_TOL:g} eV/atom",
                "metastable": f"valid and e_above_hull <= {METASTABLE_EHULL:g} eV/atom",
                "sun": "stable, unique and novel (msun: metastable, unique and novel); denominators: all generated",
                "energies": "CHGNet 0.3.0 single point on the structures as given (no relaxation)"},
            "wyckoff_template": "spglib space group + sorted Wyckoff letters of the orbits at the space-group symprec",
            "space_group_symprec": symprec, "requested_space_group_symprec": STRICT_SYMPREC,
            "jensen_shannon": "scipy.spatial.distance.jensenshannon, natural log, space groups 0-230",
            "uniqueness_matcher": {**MATCHER_SETTINGS, "primitive_cell": True, "scale": True,
                                   "compared": "same reduced formula and reduced-cell site count"},
        },
    }
    timings["total"] = time.perf_counter() - t_start
    metrics["timings_s"] = {key: round(v, 2) for key, v in timings.items()}
    return metrics, rows


def write_rows_csv(path, rows: Sequence[GenRow]) -> None:
    """One CSV row per generated crystal (the fields of :class:`GenRow`)."""
    import csv

    table = [asdict(r) for r in rows]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]) if table else [f for f in GenRow.__dataclass_fields__])
        writer.writeheader()
        writer.writerows(table)


__all__ = [
    "COMPOSITION_SCALINGS",
    "COV_CUTOFFS",
    "GenRow",
    "chgnet_energies",
    "composition_fingerprint",
    "coverage",
    "detect_dataset",
    "evaluate_gen",
    "fit_standardizer",
    "hull_energies",
    "read_generated",
    "standardize",
    "structure_fingerprint",
    "wyckoff_template",
    "write_rows_csv",
]
