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

Costs: CrystalNN fingerprints take about 0.1-1 s per crystal, so fingerprints, densities and space
groups of the reference and training files (and the reference property predictions and the
reference and training CHGNet energies) are cached under ``default_cache_dir()/evaluate`` keyed by
the file's content hash (never in the repository).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

#: COV cutoffs (structure, composition) per dataset.
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp_20": (0.4, 10.0),
    "carbon_24": (0.2, 4.0),
    "perov_5": (0.2, 4.0),
    "mpts_52": (0.4, 10.0),  # no generation benchmark; the official config points to mp20
}
#: spglib tolerance (Å) of the requested-space-group check (the tolerance outputs are written with).
STRICT_SYMPREC = 1e-3
#: Default number of valid generated crystals in the property statistics.
DEFAULT_SAMPLE_SIZE = 1000
#: StructureMatcher settings of uniqueness and novelty (pymatgen's defaults).
MATCHER_SETTINGS = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}
#: Dimensions of the fingerprints.
STRUCT_FP_DIM, COMP_FP_DIM = 61, 132
#: Composition-fingerprint scalings of COV: CDVAE's fixed constants (the paper's) or the training set's.
COMPOSITION_SCALINGS = ("cdvae", "train")
#: e_above_hull (eV/atom) at most which a crystal counts as stable / metastable.
STABLE_TOL, METASTABLE_EHULL = 1e-6, 0.1
_CACHE_VERSION = 2
_HIST_BINS = 40


def dataset_symprec(dataset: str | None) -> float:
    """spglib tolerance of a benchmark's symmetry analysis: 0.01 Å for Perov-5, else 0.1 Å."""
    return 0.01 if dataset == "perov_5" else 0.1


def detect_dataset(path) -> str | None:
    """Benchmark name (``perov_5``, ``mp_20``, ...) of a CSV recognised by its checksum, else None."""
    from ..data.registry import find_by_checksum
    from ..data.sources import content_hash

    entry = find_by_checksum(content_hash(path))
    return None if entry is None else entry.dataset


# ------------------------------------------------------------------------------ fingerprints
@lru_cache(maxsize=1)
def _crystalnn():
    from matminer.featurizers.site import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@lru_cache(maxsize=1)
def _magpie():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=False)


def structure_fingerprint(structure) -> np.ndarray | None:
    """Mean over sites of the CrystalNN "ops" fingerprint (61 values); None if it raises."""
    featurizer = _crystalnn()
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
            return tuple(float(v) for v in _magpie().featurize(Composition(dict(key))))
    except Exception:  # noqa: BLE001
        return None


def composition_fingerprint(composition) -> np.ndarray | None:
    """Magpie ElementProperty fingerprint (132 values, NaN where matminer has no data); None on failure."""
    reduced = composition.element_composition.reduced_composition
    key = tuple(sorted((el.symbol, float(amt)) for el, amt in reduced.items()))
    values = _comp_fp_cached(key)
    return None if values is None else np.asarray(values, dtype=np.float64)


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
    """(fps - mean) / std with NaN replaced by 0 (i.e. by the mean)."""
    out = (np.asarray(fps, dtype=np.float64) - mean) / std
    return np.where(np.isnan(out), 0.0, out)


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


# ------------------------------------------------------------------------------ per structure
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


def _parse(source):
    from pymatgen.core import Structure

    from ..data.sources import parse_cif

    if isinstance(source, Structure):
        return source
    if source is None:
        return None
    try:
        structure = parse_cif(source)
    except Exception:  # noqa: BLE001 - an unreadable CIF is an invalid crystal
        return None
    return structure if len(structure) else None


def _reduced(structure):
    """The cell StructureMatcher compares (Niggli, then primitive), or None if it cannot be built."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return structure.get_reduced_structure("niggli").get_primitive_structure()
    except Exception:  # noqa: BLE001
        return None


def _space_group(structure, symprec: float) -> int:
    from ..symmetry.analyze import detect_space_group

    try:
        return detect_space_group(structure, symprec)
    except Exception:  # noqa: BLE001 - spglib failure: no space group
        return 0


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


def _analyze_one(kind: str, source, opts: dict) -> dict:
    from .validity import structure_composition_valid, structure_valid

    s = _parse(source)
    if s is None:
        return {"parsed": False}
    out = {"parsed": True, "formula": s.composition.reduced_formula, "num_atoms": len(s)}
    if kind == "reduce":
        red = _reduced(s)
        out["reduced"] = red
        return out
    cfp = composition_fingerprint(s.composition)
    out["comp_fp"] = cfp
    out["space_group"], out["template"] = wyckoff_template(s, opts["symprec"])
    if kind == "training":
        return out
    out["struct_fp"] = structure_fingerprint(s)
    out["density"] = float(s.density) if s.volume > 0 else float("nan")
    out["num_elements"] = len(s.composition.elements)
    if opts.get("keep_structure"):
        out["structure"] = s
    if kind == "generated":
        try:
            out["struct_valid"] = bool(structure_valid(s))
        except Exception:  # noqa: BLE001
            out["struct_valid"] = False
        for key, ox in (("comp_valid", "smact14"), ("comp_valid_icsd24", "icsd24")):
            try:
                out[key] = bool(structure_composition_valid(s, oxidation_states=ox))
            except Exception:  # noqa: BLE001
                out[key] = False
        out["space_group_strict"] = _space_group(s, STRICT_SYMPREC)
        out["reduced"] = _reduced(s)
    return out


def _analyze_chunk(job):
    kind, items, opts = job
    warnings.simplefilter("ignore")
    return [(i, _analyze_one(kind, src, opts)) for i, src in items]


def _match_bucket(job):
    """Uniqueness (vs earlier generated) and novelty (vs training) within one bucket."""
    gen_ids, gen_structs, train_structs = job
    from pymatgen.analysis.structure_matcher import StructureMatcher

    warnings.simplefilter("ignore")
    matcher = StructureMatcher(**MATCHER_SETTINGS)

    def fit(a, b) -> bool:
        try:
            return bool(matcher.fit(a, b, skip_structure_reduction=True))
        except Exception:  # noqa: BLE001 - an unmatchable pair is different
            return False

    unique, novel = [], []
    for k, s in enumerate(gen_structs):
        unique.append(not any(fit(s, gen_structs[j]) for j in range(k)))
        novel.append(not any(fit(s, t) for t in train_structs))
    return gen_ids, unique, novel


class _Runner:
    """Runs chunked jobs inline or on a process pool, with a progress bar."""

    def __init__(self, workers: int, progress: bool):
        self.workers, self.progress, self.pool = max(1, int(workers)), progress, None

    def __enter__(self):
        if self.workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self.pool = ctx.Pool(self.workers)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def map(self, fn, jobs, sizes, desc: str):
        from tqdm import tqdm

        bar = tqdm(total=sum(sizes), desc=desc, unit="crystal", disable=not self.progress, file=sys.stderr)
        results = []
        it = map(fn, jobs) if self.pool is None else self.pool.imap(fn, jobs)
        for res, size in zip(it, sizes, strict=True):
            results.append(res)
            bar.update(size)
        bar.close()
        return results


def _analyze_all(runner: _Runner, kind: str, sources: Sequence, opts: dict, desc: str, chunk: int) -> list[dict]:
    items = list(enumerate(sources))
    jobs = [(kind, items[i:i + chunk], opts) for i in range(0, len(items), chunk)]
    out: list[dict] = [{} for _ in items]
    for res in runner.map(_analyze_chunk, jobs, [len(j[1]) for j in jobs], desc):
        for i, rec in res:
            out[i] = rec
    return out


# ------------------------------------------------------------------------------ reference sets
def _stack(records: list[dict], key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.full((len(records), dim), np.nan)
    ok = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        v = r.get(key)
        if v is not None:
            arr[i] = v
            ok[i] = True
    return arr, ok


def _set_arrays(records: list[dict], kind: str) -> dict:
    comp, comp_ok = _stack(records, "comp_fp", COMP_FP_DIM)
    arrays = {
        "parsed": np.array([bool(r.get("parsed")) for r in records], dtype=bool),
        "formula": np.array([r.get("formula") or "" for r in records], dtype=str),
        "comp_fp": comp, "comp_ok": comp_ok,
        "space_group": np.array([r.get("space_group", 0) for r in records], dtype=np.int64),
        "template": np.array([r.get("template") or "" for r in records], dtype=str),
    }
    if kind == "reference":
        struct, struct_ok = _stack(records, "struct_fp", STRUCT_FP_DIM)
        arrays.update(struct_fp=struct, struct_ok=struct_ok,
                      density=np.array([r.get("density", np.nan) for r in records], dtype=np.float64),
                      num_elements=np.array([r.get("num_elements", 0) for r in records], dtype=np.int64))
    return arrays


def _resolve_set(source) -> tuple[list, str | None]:
    """(sources, content hash or None) of a path or a sequence of Structures / CIF texts."""
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and "\n" in source):
        from ..data.sources import content_hash, read_crystals

        return [raw.cif for raw in read_crystals(source)], content_hash(source)
    return list(source), None


def _read_cache(path: Path, n: int):
    """Contents of a cache file (dict of arrays for .npz, an array for .npy) if it describes ``n``
    crystals; None if it is missing, broken or stale (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                content = {k: data[k] for k in data.files}
            size = len(content["parsed"])
        else:
            content = np.load(path, allow_pickle=False)
            size = len(content)
    except Exception:  # noqa: BLE001 - a broken cache is recomputed
        return None
    return content if size == n else None


def _set_analysis(runner, kind: str, source, symprec: float, cache_dir, desc: str) -> tuple[dict, list]:
    """Per-crystal arrays of a reference or training set, cached by content hash when it is a file."""
    sources, digest = _resolve_set(source)
    if not sources:
        raise ValueError(f"the {kind} set is empty")
    path = None
    if cache_dir is not None and digest is not None:
        path = Path(cache_dir) / f"{kind}-{digest[:32]}-sp{symprec:g}-v{_CACHE_VERSION}.npz"
        cached = _read_cache(path, len(sources))
        if cached is not None:
            return cached, sources
    chunk = 64 if kind == "training" else 8
    records = _analyze_all(runner, kind, sources, {"symprec": symprec}, desc, chunk)
    arrays = _set_arrays(records, kind)
    if path is not None:
        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
    return arrays, sources


# ------------------------------------------------------------------------------ energies
def _energy_model_name() -> str:
    import chgnet

    return f"CHGNet {chgnet.__version__} (model 0.3.0): predicted total energy per atom, eV/atom"


@lru_cache(maxsize=1)
def _chgnet():
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet

        return CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)


def chgnet_energies(structures: Sequence, batch_size: int = 32, progress: bool = True, desc: str = "energy") -> np.ndarray:
    """CHGNet (pretrained 0.3.0) predicted total energy per atom (eV/atom); NaN where it fails."""
    from tqdm import tqdm

    model = _chgnet()
    out = np.full(len(structures), np.nan)
    bar = tqdm(total=len(structures), desc=desc, unit="crystal", disable=not progress, file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, len(structures), batch_size):
            batch = list(structures[start:start + batch_size])
            try:
                preds = model.predict_structure(batch, task="e", batch_size=batch_size)
                out[start:start + len(batch)] = [float(p["e"]) for p in preds]
            except Exception:  # noqa: BLE001 - one bad crystal (e.g. isolated atoms): go one by one
                for k, s in enumerate(batch):
                    with contextlib.suppress(Exception):  # stays NaN
                        out[start + k] = float(model.predict_structure(s, task="e")["e"])
            bar.update(len(batch))
    bar.close()
    return out


def _save_npz(path: Path, **arrays) -> None:
    with contextlib.suppress(OSError):  # an unwritable cache only costs time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def _set_energies(sources: list, source, cache_dir, want: np.ndarray, progress: bool, desc: str) -> np.ndarray:
    """CHGNet energies per atom of the crystals ``want`` (indices) of a set; NaN elsewhere.

    With a cache (a file set and ``cache_dir``) the computed values are kept in
    ``energy-chgnet030-<hash>.npz`` with a mask of what was computed, so a later call computes only
    what is missing (e.g. a larger training subset for the hull).
    """
    n = len(sources)
    values, done = np.full(n, np.nan), np.zeros(n, dtype=bool)
    path = None
    if cache_dir is not None and isinstance(source, (str, os.PathLike)):
        from ..data.sources import content_hash

        path = Path(cache_dir) / f"energy-chgnet030-{content_hash(source)[:32]}-v{_CACHE_VERSION}.npz"
        cached = _read_cache(path, n)
        if cached is not None and "energy" in cached and "done" in cached:
            values, done = cached["energy"].astype(float), cached["done"].astype(bool)
    todo = np.asarray([i for i in np.asarray(want, dtype=np.int64) if not done[i]], dtype=np.int64)
    if len(todo):
        structures = [_parse(sources[i]) for i in todo]
        ok = np.array([s is not None for s in structures], dtype=bool)
        if ok.any():
            values[todo[ok]] = chgnet_energies([s for s in structures if s is not None], progress=progress, desc=desc)
        done[todo] = True
        if path is not None:
            _save_npz(path, parsed=done, energy=values, done=done)
    out = np.full(n, np.nan)
    out[want] = values[want]
    return out


# ------------------------------------------------------------------------------ property model (d_E)
def _graph_chunk(job):
    from .property_model import safe_crystal_graph

    warnings.simplefilter("ignore")
    return [safe_crystal_graph(_parse(src)) for src in job]


def _graphs(runner: _Runner, sources: Sequence, desc: str, chunk: int = 8) -> list:
    jobs = [list(sources[i:i + chunk]) for i in range(0, len(sources), chunk)]
    out: list = []
    for res in runner.map(_graph_chunk, jobs, [len(j) for j in jobs], desc):
        out.extend(res)
    return out


def _set_property(runner: _Runner, model, sources: list, source, cache_dir, desc: str) -> np.ndarray:
    """Property-model predictions for every crystal of a set (NaN where no graph), cached by the
    set's content hash and the weights' hash."""
    path = None
    if cache_dir is not None and isinstance(source, (str, os.PathLike)):
        from ..data.sources import content_hash

        path = (Path(cache_dir) / f"prop-{model.name}-{model.weights_hash[:16]}-{content_hash(source)[:32]}"
                f"-v{_CACHE_VERSION}.npy")
        cached = _read_cache(path, len(sources))
        if cached is not None:
            return cached
    values = model.predict_graphs(_graphs(runner, sources, desc))
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
            np.save(tmp, values)
            os.replace(tmp, path)
    return values


def _load_property_model(property_model, dataset: str | None, models_dir):
    """(model or None, reason when None). ``property_model``: "auto" (the dataset's model if its
    weights are found), None / "none" (no property model), or a model name or folder (must load)."""
    from .property_model import DATASET_PROPERTY_MODEL, PropertyModel

    if property_model is None or property_model == "none":
        return None, "not requested"
    if property_model == "auto":
        name = DATASET_PROPERTY_MODEL.get(dataset or "")
        if name is None:
            return None, f"no property model for dataset {dataset!r}"
        try:
            return PropertyModel.load(name, models_dir), None
        except FileNotFoundError as err:
            return None, str(err)
    return PropertyModel.load(property_model, models_dir), None


# ------------------------------------------------------------------------------ hull (CHGNet)
def hull_energies(gen_compositions: Sequence, gen_energies: np.ndarray, train_compositions: Sequence,
                  train_energies: np.ndarray) -> np.ndarray:
    """Energy per atom above the convex hull of training entries, for each generated crystal.

    Args:
        gen_compositions / train_compositions: pymatgen Compositions (None: skipped).
        gen_energies / train_energies: energies per atom (eV/atom; NaN: skipped).

    Returns:
        e_above_hull per generated crystal (eV/atom, negative below the hull); NaN without an energy
        or when the training entries of its chemical system lack an element's elemental reference.
        One PhaseDiagram per chemical system, from the training entries whose elements are a subset.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    train: dict[frozenset, list] = defaultdict(list)  # chemical system -> its training entries
    for c, e in zip(train_compositions, train_energies, strict=True):
        if c is not None and np.isfinite(e):
            train[frozenset(el.symbol for el in c.elements)].append(PDEntry(c, float(e) * c.num_atoms))
    out = np.full(len(gen_compositions), np.nan)
    by_system: dict[frozenset, list[int]] = defaultdict(list)
    for i, (c, e) in enumerate(zip(gen_compositions, gen_energies, strict=True)):
        if c is not None and np.isfinite(e):
            by_system[frozenset(el.symbol for el in c.elements)].append(i)
    for system, ids in by_system.items():
        if any(not train.get(frozenset([el])) for el in system):
            continue  # an element without an elemental training crystal: no hull
        members = sorted(system)
        entries = [entry for r in range(1, len(members) + 1) for sub in itertools.combinations(members, r)
                   for entry in train.get(frozenset(sub), ())]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd_ = PhaseDiagram(entries)
            for i in ids:
                c = gen_compositions[i]
                entry = PDEntry(c, float(gen_energies[i]) * c.num_atoms)
                out[i] = pd_.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)[1]
    return out


# ------------------------------------------------------------------------------ inputs
def read_generated(path) -> tuple[list[tuple[str, str | None]], dict[str, int] | None]:
    """Generated crystals of a ``generate`` output folder (any layout, read by
    :mod:`diffcsp_pp.data.outputs`), a folder of CIFs or a CSV (material_id, cif).

    Returns:
        ([(name, CIF text or None if unreadable)], {name: requested space group} or None without a
        manifest). An output folder's record order is kept (it defines "earlier" for uniqueness).
    """
    from ..data import outputs
    from ..data.sources import is_csv, read_crystals
    from ..errors import DataError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if not is_csv(path):
            raise DataError(f"{path}: expected a folder of CIFs, a generate output folder or a CSV with a cif column")
        return [(raw.material_id, raw.cif) for raw in read_crystals(path)], None
    try:
        found = outputs.records(path)
        manifest = outputs.read_manifest(path)
    except ValueError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if not found:
        raise DataError(f"{path} contains no .cif files")
    requested = None if manifest is None else {r["name"]: int(r["space_group"]) for r in found if r.get("space_group")}
    items = []
    for r in found:
        try:
            items.append((r["name"], (path / r["file"]).read_text(errors="replace")))
        except OSError:
            items.append((r["name"], None))
    return items, requested


# ------------------------------------------------------------------------------ main entry
def _wdist(a, b) -> float | None:
    from scipy.stats import wasserstein_distance

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return None
    return float(wasserstein_distance(a, b))


def _hist(gen, ref, bins: int = _HIST_BINS, integer: bool = False) -> dict:
    gen = np.asarray(gen, float)
    ref = np.asarray(ref, float)
    gen, ref = gen[np.isfinite(gen)], ref[np.isfinite(ref)]
    both = np.concatenate([gen, ref])
    if not len(both):
        return {"edges": [], "generated": [], "reference": []}
    lo, hi = float(both.min()), float(both.max())
    if integer:
        edges = np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    return {"edges": [float(e) for e in edges],
            "generated": np.histogram(gen, edges)[0].tolist(), "reference": np.histogram(ref, edges)[0].tolist()}


def _sg_hist(values) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(int(x) for x in values).items())}


def _js(a, b) -> float | None:
    from scipy.spatial.distance import jensenshannon

    pa = np.bincount(np.asarray(a, dtype=np.int64), minlength=231)[:231].astype(float)
    pb = np.bincount(np.asarray(b, dtype=np.int64), minlength=231)[:231].astype(float)
    if pa.sum() == 0 or pb.sum() == 0:
        return None
    return float(jensenshannon(pa / pa.sum(), pb / pb.sum()))


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
    prop_model, why_not = _load_property_model(property_model, dataset, property_models_dir)
    if prop_model is None and property_model not in (None, "none"):
        notes.append(f"no d_E with the paper's property model: {why_not}")

    names = [str(n) for n, _ in generated]
    with _Runner(workers, progress) as runner:
        t = time.perf_counter()
        gen = _analyze_all(runner, "generated", [s for _, s in generated], {"symprec": symprec, "keep_structure": True},
                           "gen: generated", 4)
        timings["generated"] = time.perf_counter() - t
        t = time.perf_counter()
        ref, ref_sources = _set_analysis(runner, "reference", reference, symprec, cache_dir, "gen: reference")
        timings["reference"] = time.perf_counter() - t
        t = time.perf_counter()
        train, train_sources = _set_analysis(runner, "training", training, symprec, cache_dir, "gen: training")
        timings["training"] = time.perf_counter() - t

        # uniqueness and novelty, bucketed by (reduced formula, sites of the reduced cell)
        t = time.perf_counter()
        gen_buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(gen):
            if r.get("parsed") and r.get("reduced") is not None:
                gen_buckets[(r["formula"], len(r["reduced"]))].append(i)
        formulas = {k[0] for k in gen_buckets}
        want = [i for i, f in enumerate(train["formula"]) if f in formulas]
        reduced_train = _analyze_all(runner, "reduce", [train_sources[i] for i in want], {}, "gen: training cells", 16)
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
        for ids, u, nv in runner.map(_match_bucket, jobs, [len(j[0]) for j in jobs], "gen: matching"):
            unique[ids] = u
            novel[ids] = nv
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
                props[sample] = prop_model.predict_graphs(_graphs(runner, [gen[i]["structure"] for i in sample],
                                                                  "d_E: generated graphs"))
            ref_props = _set_property(runner, prop_model, ref_sources, reference, cache_dir, "d_E: reference graphs")
            timings["property_model"] = time.perf_counter() - t

    # coverage
    if composition_scaling == "cdvae":
        from .constants import CDVAE_COMP_SCALER_MEANS, CDVAE_COMP_SCALER_STDS

        mean, std = np.asarray(CDVAE_COMP_SCALER_MEANS), np.asarray(CDVAE_COMP_SCALER_STDS)
    else:
        mean, std = fit_standardizer(train["comp_fp"][train["comp_ok"]])
    g_struct, _ = _stack(gen, "struct_fp", STRUCT_FP_DIM)
    g_comp, g_comp_ok = _stack(gen, "comp_fp", COMP_FP_DIM)
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
        chgnet_name = _energy_model_name()
        need = np.flatnonzero(valid) if hull else sample
        if len(need):
            energies[need] = chgnet_energies([gen[i]["structure"] for i in need], progress=progress,
                                             desc="energy: generated")
        ref_energy = _set_energies(ref_sources, reference, cache_dir, np.arange(len(ref_sources)), progress,
                                   "energy: reference")
        timings["energy"] = time.perf_counter() - t
        if hull:
            t = time.perf_counter()
            n_train = len(train_sources)
            hull_idx = np.arange(n_train)
            if hull_train_max is not None and int(hull_train_max) < n_train:
                hull_idx = np.sort(np.random.default_rng(seed).choice(n_train, size=int(hull_train_max), replace=False))
            train_energy = _set_energies(train_sources, training, cache_dir, hull_idx, progress, "energy: training (hull)")
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
    train_templates = {t_ for t_, ok in zip(train["template"], train["parsed"], strict=True) if ok and t_}
    g_template = np.array([r.get("template") or "" for r in gen], dtype=object)
    has_template = parsed & (g_template != "")
    novel_template = np.array([bool(t_) and t_ not in train_templates for t_ in g_template])
    distinct = {t_ for t_ in g_template[has_template]}
    distinct_novel = {t_ for t_ in distinct if t_ not in train_templates}

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
        "space_group": {"generated": _sg_hist(gen_sg), "training": _sg_hist(train["space_group"][train["parsed"]]),
                        "reference": _sg_hist(ref["space_group"][ref_ok])},
        "density": _hist(g_density[sample], ref["density"][ref_ok]),
        "num_elements": _hist(g_nelem[sample], ref["num_elements"][ref_ok], integer=True),
    }
    if prop_model is not None:
        histograms["property"] = _hist(props[sample], ref_props[ref_ok])
    if energy:
        histograms["energy_per_atom"] = _hist(energies[sample], ref_energy[ref_ok])
    rate = (lambda mask: float(mask.mean())) if energy and hull else (lambda mask: None)
    metrics = {
        "dataset": dataset,
        "struct_valid": float(struct_valid.mean()),
        "comp_valid": float(comp_valid.mean()),
        "comp_valid_icsd24": float(comp_valid_icsd24.mean()),
        "valid": float(valid.mean()),
        **cov,
        "wdist_density": _wdist(g_density[sample], ref["density"][ref_ok]) if k else None,
        "wdist_num_elements": _wdist(g_nelem[sample], ref["num_elements"][ref_ok]) if k else None,
        "wdist_prop": (_wdist(props[sample], ref_props[ref_ok]) if k else None) if prop_model is not None else None,
        "wdist_energy": (_wdist(energies[sample], ref_energy[ref_ok]) if k else None) if energy else None,
        "energy_model": {
            "wdist_prop": None if prop_model is None else prop_model.describe() + " (the paper's d_E)",
            "wdist_energy": chgnet_name,
            "e_above_hull": None if not (energy and hull) else
            "CHGNet single-point energy per atom above the convex hull of the training set's CHGNet energies",
        },
        "property_sample_size": int(k),
        "requested_space_group_rate": req_rate,
        "space_group_js_distance_training": _js(gen_sg, train["space_group"][train["parsed"]]),
        "space_group_js_distance_reference": _js(gen_sg, ref["space_group"][ref_ok]),
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
