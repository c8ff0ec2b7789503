"""The jobs: what the API, the CLI and the scripts run. Each job takes an engine
(:class:`~diffcsp_pp.sample.engine.Engine`: network + SamplerConfig + runner) and returns pymatgen
Structures carrying their :class:`~diffcsp_pp.sample.provenance.Provenance`.

- :func:`predict`: formulas in given space groups (Wyckoff assignment given or enumerated and
  ranked, :func:`wyckoff_candidates`), one sampler pass;
- :func:`predict_dataset`: one prediction per row of a dataset from the row's own template, in
  batches (``diffcsp-pp predict --csv`` and ``scripts/csp_benchmark.py``);
- :func:`predict_from_formula` / :func:`predict_from_formulas`: a formula alone: retrieved
  training templates refined with partial noise, or the enumerated fallback;
  :func:`predict_formula_dataset`: the same for every row of a list, in batches
  (``diffcsp-pp predict --csv ... --from-formula``);
- :func:`generate`: ab initio generation from a plan of symmetry patterns
  (:func:`generation_plan`), in batches (``diffcsp-pp generate``).

Seeds of batched jobs: batch b (rows ``b·batch_size ...`` of the *whole* input) is drawn with
``seed + b``, so a run that skips finished batches (a resumed CLI run) draws exactly what an
uninterrupted run draws, whatever was done before, and a run spread over Lightning processes
(:func:`run_batches` with ``devices``) draws what one process draws.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Collection, Iterator, Sequence

from . import policy
from .data.template_stats import TemplateStats
from .sample.engine import Engine
from .sample.provenance import Provenance, wyckoff_text
from .symmetry.enumerate import parse_formula, realizes_space_group, wyckoff_assignments
from .symmetry.families import check_space_group
from .symmetry.templates import build_template
from .symmetry.wyckoff import wyckoff_position

#: Largest conventional cell the formula-unit search builds from a reduced formula (a full-cell
#: formula or a given assignment may be larger, up to the ``atoms_per_cell`` limit of :mod:`diffcsp_pp.policy`).
MAX_ATOMS = 200
#: Default batch sizes of the dataset jobs (the CLI's ``--batch-size`` defaults).
PREDICT_BATCH = 256
GENERATE_BATCH = 100

_SITE = re.compile(r"^([A-Z][a-z]?):(\d*[a-zA])$")


# ------------------------------------------------------------------------------------ planning
def parse_wyckoff(wyckoff) -> list[tuple[str, str]]:
    """``"Sr:1a Ti:1b O:3c"`` or ``[("Sr", "1a"), ...]`` -> list of (element, letter)."""
    if isinstance(wyckoff, str):
        items = []
        for token in wyckoff.replace(",", " ").split():
            m = _SITE.match(token)
            if not m:
                raise ValueError(f"malformed Wyckoff site {token!r} in {wyckoff!r}: expected e.g. 'Sr:1a Ti:1b O:3c'")
            items.append((m.group(1), m.group(2)))
        if not items:
            raise ValueError("empty Wyckoff assignment")
        return items
    try:
        return [(str(el), str(letter)) for el, letter in wyckoff]
    except (TypeError, ValueError):
        raise ValueError(f"Wyckoff assignment must be a string like 'Sr:1a Ti:1b' or (element, letter) pairs, got {wyckoff!r}") from None


def wyckoff_candidates(stats: TemplateStats, formula: str, space_group: int, wyckoff=None,
                       limit: int = 5) -> list[tuple[list, int]]:
    """Candidate (assignment, Z) pairs of a formula in a space group, best first.

    A formula whose counts have a common divisor is the full cell; a reduced one is multiplied by
    the smallest Z (up to MAX_ATOMS atoms) that admits an assignment. A given ``wyckoff`` must add
    up to the formula (times Z) and be able to have the group
    (:func:`~diffcsp_pp.symmetry.enumerate.realizes_space_group`). Otherwise the assignments that
    can have the group (at the smallest Z that has one) are ranked by the training count of the
    species-resolved pattern, then of the pattern alone, then by chemical similarity to the training
    decorations of the pattern (:mod:`diffcsp_pp.sample.ranking`), then fewer orbits, then
    enumeration order.
    """
    number = check_space_group(space_group)
    comp = model_formula(formula)
    reduced = math.gcd(*comp.values()) == 1
    if not reduced:  # the full cell: bounded before any enumeration
        policy.check("atoms_per_cell", sum(comp.values()), f"atoms in the cell of {formula}")
    if wyckoff is not None:
        sites = parse_wyckoff(wyckoff)
        build_template(number, sites)  # validates letters and elements
        got: dict[str, int] = {}
        for el, letter in sites:
            got[el] = got.get(el, 0) + wyckoff_position(number, letter).multiplicity
        policy.check("atoms_per_cell", sum(got.values()), f"atoms of the Wyckoff assignment {wyckoff!r}")
        z = _multiple_of(got, comp) if reduced else (1 if got == comp else None)
        if z is None:
            raise ValueError(f"Wyckoff assignment {wyckoff!r} gives {_fmt(got)}, which does not add up to {formula}"
                             + (" (or a multiple of it)" if reduced else ""))
        if not realizes_space_group(number, sites):
            raise ValueError(f"Wyckoff assignment {wyckoff!r} cannot have space group {number}: its orbits together "
                             "always have more symmetry (e.g. a translation that halves the cell)")
        return [(sites, z)]
    for z in (range(1, MAX_ATOMS // sum(comp.values()) + 1) if reduced else [1]):
        found = wyckoff_assignments(number, {el: n * z for el, n in comp.items()}, limit=2000)
        if found:
            from .sample.ranking import decoration_score

            known = _decorations(stats, number)

            def rank(item):
                labels, species = [lab for _, lab in item[1]], [el for el, _ in item[1]]
                return (-stats.count(number, labels, species), -stats.count(number, labels),
                        -decoration_score(number, item[1], known), len(item[1]), item[0])

            ranked = (a for _, a in sorted(enumerate(found), key=rank))
            # assignments whose orbits always have more symmetry than the group are never drawn
            kept = list(itertools.islice((a for a in ranked if realizes_space_group(number, a)), limit))
            if kept:
                return [(a, z) for a in kept]
    fits = _fitting_multiples(number, comp)
    hint = f"; formula-unit multiples that fit: {', '.join(map(str, fits))}" if fits else "; no multiple up to " \
           f"{MAX_ATOMS} atoms fits"
    raise ValueError(f"{formula} admits no Wyckoff assignment in space group {number}{hint}")


def _decorations(stats: TemplateStats, space_group: int):
    """The species-resolved training decorations of one space group in ``stats`` (built once per
    statistics object and group: parsing all of MP-20's 50,000 keys took about a second)."""
    from .sample.ranking import decorations

    cache = stats.__dict__.setdefault("_decorations", {})
    if space_group not in cache:
        cache[space_group] = decorations(stats, space_group)
    return cache[space_group]


def generation_plan(stats: TemplateStats, n: int, space_group: int | None = None, seed: int = 0,
                    wyckoff=None) -> list[tuple[int, tuple[str, ...]]]:
    """The (space group, Wyckoff labels) of each of ``n`` crystals to generate (deterministic for a
    seed): drawn from the training patterns (:mod:`diffcsp_pp.sample.patterns`), restricted to
    ``space_group``; ``wyckoff`` (labels such as ``"2a 2d 4g"``, needs ``space_group``) fixes it."""
    import numpy as np

    from .sample.patterns import draw_patterns

    _check_count(n, "n")
    policy.check("structures", n, "n")
    if wyckoff is not None:
        if space_group is None:
            raise ValueError("a Wyckoff pattern needs a space group")
        number = check_space_group(space_group)
        tokens = wyckoff.replace(",", " ").split() if isinstance(wyckoff, str) else [str(w) for w in wyckoff]
        if not tokens:
            raise ValueError(f"empty Wyckoff pattern {wyckoff!r}")
        labels = tuple(wyckoff_position(number, t).label for t in tokens)
        policy.check("atoms_per_cell", sum(wyckoff_position(number, lab).multiplicity for lab in labels),
                     f"atoms of the Wyckoff pattern {wyckoff!r}")
        build_template(number, [("H", lab) for lab in labels])  # fixed positions used twice -> ValueError
        return [(number, labels)] * n
    return draw_patterns(stats, n, space_group, np.random.default_rng([int(seed), 7]))


def dataset_infos(data, symprec: float | None) -> list:
    """SymmetryInfos of a dataset that the model can take (:func:`dataset_rows`, without the report)."""
    return dataset_rows(data, symprec)[0]


def dataset_rows(data, symprec: float | None) -> tuple[list, list[dict]]:
    """(SymmetryInfos the model can take, skipped rows) of a dataset: a CSV (``material_id``,
    ``cif``) or CIF folder, preprocessed with ``symprec`` (cached,
    :func:`diffcsp_pp.data.preprocess.preprocess`), or a list of SymmetryInfos.

    A skipped row is ``{"row", "material_id", "reason", "detail"}``: a row the analysis rejected
    (malformed or empty CIF, disorder, ...: the preprocessing report's reasons), or a crystal above
    the ``atoms_per_cell`` limit (``too_many_atoms``) or with an element the network does not embed
    (``element_out_of_range``). Nothing is dropped without an entry here.
    """
    import json
    import os
    from pathlib import Path

    from .symmetry.constants import NUM_ELEMENTS

    skipped: list[dict] = []
    if not isinstance(data, (str, os.PathLike)):
        infos, rows = list(data), list(range(len(data)))
    else:
        from .data.preprocess import PreprocessConfig, preprocess
        from .data.registry import default_cache_dir
        from .data.store import load_records, load_rows

        if not Path(data).exists():
            raise FileNotFoundError(f"no such file or folder: {data}")
        res = preprocess(data, default_cache_dir() / "preprocessed", PreprocessConfig(symprec=symprec), progress=False)
        infos, rows = load_records(res.output), [int(r) for r in load_rows(res.output)]
        skipped = [{k: f.get(k) for k in ("row", "material_id", "reason", "detail")}
                   for f in json.loads(res.report.read_text()).get("failures", [])]
    bound = policy.limits().atoms_per_cell
    kept = []
    for row, info in zip(rows, infos, strict=True):
        top = int(max(info.atom_types))
        if info.num_atoms > bound:
            skipped.append({"row": row, "material_id": info.structure_id, "reason": "too_many_atoms",
                            "detail": f"{info.num_atoms} atoms in the conventional cell, above the limit atoms_per_cell "
                                      f"= {bound} (--raise-limit atoms_per_cell=N)"})
        elif top > NUM_ELEMENTS:
            skipped.append({"row": row, "material_id": info.structure_id, "reason": "element_out_of_range",
                            "detail": f"element Z = {top}; the model knows Z <= {NUM_ELEMENTS}"})
        else:
            kept.append(info)
    skipped.sort(key=lambda r: (r["row"] is None, r["row"] or 0))
    return kept, skipped


def formula_source(path) -> str:
    """Where a formula-only job takes each row's formula from: ``"formula"`` for a CSV with a
    ``formula`` column and no ``cif`` column, else ``"cif"`` (the structure's composition).
    FileNotFoundError for a missing path; ValueError for a CSV that is unreadable or has neither column."""
    from pathlib import Path

    from .data.sources import is_csv

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if not (path.is_file() and is_csv(path)):
        return "cif"
    import pandas as pd

    try:
        header = set(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as err:
        raise ValueError(f"cannot read {path} as CSV: {err}") from None
    if "cif" in header:
        return "cif"
    if "formula" in header:
        return "formula"
    raise ValueError(f"{path} has neither a 'cif' nor a 'formula' column (columns: {', '.join(map(str, sorted(header)))})")


def formula_rows(data) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """(rows, skipped) of a formula-only dataset job: ``(row, material_id, formula)`` per usable row.

    ``data``: a CSV with a ``cif`` column, a CIF file or a folder of CIFs (the formula is each
    structure's reduced composition; nothing else of the structure is used), or a CSV with a
    ``formula`` column and no ``cif`` column (ids from ``material_id`` when present, else the row
    number). Skipped rows (same fields as :func:`dataset_rows`): an unreadable CIF
    (``unreadable_cif``), a partly occupied site (``disordered``), a formula that does not parse
    (``bad_formula``) or an element the network does not embed (``element_out_of_range``).
    """
    from pathlib import Path

    from .data.sources import parse_cif, read_crystals

    path = Path(data)
    items: list[tuple[int, str, str | None, str | None]] = []  # row, id, formula, cif
    if formula_source(path) == "formula":
        import pandas as pd

        frame = pd.read_csv(path, dtype={"material_id": str, "formula": str}, keep_default_na=False)
        ids = frame["material_id"] if "material_id" in frame.columns else frame.index.astype(str)
        items = [(i, str(mid), str(f), None) for i, (mid, f) in enumerate(zip(ids, frame["formula"], strict=True))]
    else:
        items = [(raw.row, raw.material_id, None, raw.cif) for raw in read_crystals(path)]
    rows, skipped = [], []
    for row, mid, formula, cif in items:
        reason = detail = None
        if cif is not None:
            try:
                comp = parse_cif(cif).composition
            except Exception as err:  # noqa: BLE001 - reported per row, the run goes on
                reason, detail = "unreadable_cif", f"{type(err).__name__}: {err}"[:300]
            else:
                if any(abs(n - round(n)) > 1e-6 for n in comp.values()):
                    reason, detail = "disordered", f"composition {comp.formula} is not a whole number of atoms"
                else:
                    formula = comp.reduced_formula.replace(" ", "")
        if reason is None:
            try:
                model_formula(formula)
            except ValueError as err:
                reason = "element_out_of_range" if "beyond the elements" in str(err) else "bad_formula"
                detail = str(err)
        if reason is None:
            rows.append((row, mid, formula))
        else:
            skipped.append({"row": row, "material_id": mid, "reason": reason, "detail": detail})
    return rows, skipped


#: File of the skipped input rows a job writes into its output folder (one JSON object per line).
SKIPPED_FILE = "skipped.jsonl"


def write_skipped(out_dir, skipped: Sequence[dict]):
    """Write ``skipped`` (rows of :func:`dataset_rows`) to ``out_dir/skipped.jsonl`` atomically, one
    JSON object per line (an empty file when nothing was skipped, so a rerun never shows stale
    rows); returns its path."""
    import json
    from pathlib import Path

    from .atomic import write_atomic

    return write_atomic(Path(out_dir) / SKIPPED_FILE, "".join(json.dumps(r) + "\n" for r in skipped))


# ----------------------------------------------------------------------------------------- jobs
def predict(engine: Engine, stats: TemplateStats, formulas: Sequence[str], space_groups: Sequence[int],
            wyckoffs: Sequence | None = None, n: int = 1, seed: int = 0) -> list[list]:
    """``n`` structures per formula in its space group (one list per formula), in one sampler pass
    seeded with ``seed``; ``n`` cycles over the best Wyckoff candidates."""
    _check_task(engine, "csp")
    _check_count(n, "n")
    policy.check("structures", n * len(formulas), "structures requested (n x formulas)")
    wyckoffs = [None] * len(formulas) if wyckoffs is None else list(wyckoffs)
    if not (len(formulas) == len(space_groups) == len(wyckoffs)):
        raise ValueError("formulas, space_groups and wyckoffs must have the same length")
    plans = []
    for formula, sg, w in zip(formulas, space_groups, wyckoffs, strict=True):
        candidates = wyckoff_candidates(stats, formula, sg, w)
        plans.append([(build_template(sg, a), z) for a, z in (candidates[i % len(candidates)] for i in range(n))])
    flat = [p for plan in plans for p in plan]
    drawn = engine.draw([t for t, _ in flat], seed)
    structures = iter(Provenance(space_group=t.space_group, seed=seed, detected_space_group=d.detected_space_group,
                                 attempts=d.attempts, wyckoff=wyckoff_text(t.species, t.wyckoff_letters),
                                 formula_units=z).attach(d.structure) for (t, z), d in zip(flat, drawn, strict=True))
    return [[next(structures) for _ in plan] for plan in plans]


def batches(count: int, batch_size: int, seed: int, done: Collection[int] = ()) -> Iterator[tuple[range, int]]:
    """(item indices, seed) of each batch of a batched job that still has an item not in ``done``:
    batch b holds items ``b·batch_size ...`` of the whole input and is seeded ``seed + b``."""
    _check_count(batch_size, "batch_size")
    policy.check("batch_size", batch_size, "batch_size")
    for b, lo in enumerate(range(0, count, batch_size)):
        idx = range(lo, min(lo + batch_size, count))
        if not all(i in done for i in idx):
            yield idx, seed + b


def predict_dataset(engine: Engine, infos: Sequence, seed: int = 0, batch_size: int = PREDICT_BATCH,
                    done: Collection[int] = (), on_batch: Callable[[list], None] | None = None,
                    progress: bool = False, devices=None, keep: bool = True) -> list:
    """One prediction per crystal of a dataset (SymmetryInfos) from its own space group and
    Wyckoff template, in batches (see the module docstring for the seeds).

    Batches whose every index is in ``done`` are skipped; ``on_batch([(index, info, structure)])``
    is called after each batch (the CLI writes it then). ``devices``
    (:class:`~diffcsp_pp.sample.distributed.Devices`): spread the batches over Lightning processes
    / GPUs / nodes (each process then returns and hands to ``on_batch`` only its own batches).
    Returns one Structure per info (None for the skipped ones, and for all with ``keep=False``).
    """
    _check_task(engine, "csp")

    def draw(idx: range, batch_seed: int) -> list:
        chunk = [infos[i] for i in idx]
        drawn = engine.draw(chunk, batch_seed)
        return [(i, info, Provenance(space_group=info.space_group, seed=batch_seed,
                                     detected_space_group=d.detected_space_group, attempts=d.attempts,
                                     wyckoff=wyckoff_text(info.species, info.wyckoff_letters)).attach(d.structure))
                for i, info, d in zip(idx, chunk, drawn, strict=True)]

    todo = list(batches(len(infos), batch_size, seed, done))
    return _collect(len(infos), run_batches(engine, draw, todo, on_batch, progress, "predict", devices, keep), keep)


def predict_from_formula(engine: Engine, folder, formula: str, top_k: int = 1, seed: int = 0,
                         diff_ratio: float | None = None) -> list:
    """Prediction from a formula alone (CSPML-style, METHOD §7.2): the ``top_k`` best training
    templates with the formula's count pattern (:func:`~diffcsp_pp.retrieval.retrieve.retrieve`),
    elements substituted, each refined from t₀ = T·``diff_ratio`` (None: the model's default;
    0: the substituted templates themselves, only the distinct candidates). Without any such
    template, enumerated templates are sampled from pure noise (``source="enumerated"``).
    ``folder``: the model's :class:`~diffcsp_pp.folder.ModelFolder` (template index, scorer, statistics).
    """
    return predict_from_formulas(engine, folder, [formula], top_k=top_k, seed=seed, diff_ratio=diff_ratio)[0]


def predict_from_formulas(engine: Engine, folder, formulas: Sequence[str], top_k: int = 1, seed: int = 0,
                          diff_ratio: float | None = None) -> list[list]:
    """:func:`predict_from_formula` for several formulas in one sampler pass seeded with ``seed``
    (one list per formula, in order): every formula's templates are retrieved first, then all
    refinements run as one batch and all enumerated fallbacks as another. A formula that has
    neither a template nor an enumerated fallback raises ValueError naming it."""
    from .retrieval.retrieve import retrieve

    _check_task(engine, "csp")
    _check_count(top_k, "top_k")
    policy.check("structures", top_k * len(formulas), "structures requested (top_k x formulas)")
    diff_ratio = engine.run_config.formula_diff_ratio() if diff_ratio is None else diff_ratio
    if diff_ratio != 0 and not (isinstance(diff_ratio, (int, float)) and 0 < diff_ratio < 1):
        raise ValueError(f"diff_ratio must be 0 (template only) or in (0, 1), got {diff_ratio!r}")
    comps = [model_formula(f) for f in formulas]
    index, scorer = folder.template_index()
    chosen: list[list] = []  # per formula: its candidates in output order ([] = enumerated fallback)
    for comp in comps:
        candidates = retrieve(index, scorer, comp, top_k=top_k, max_atoms=MAX_ATOMS)
        if diff_ratio == 0:  # template only: the distinct substituted templates, exactly symmetric
            chosen.append(candidates[:top_k])
        else:
            chosen.append([candidates[i % len(candidates)] for i in range(top_k)] if candidates else [])
    flat = [c for cands in chosen for c in cands]
    if diff_ratio == 0:
        from .sample.engine import CHECK_SYMPREC, Drawn
        from .symmetry.analyze import detect_space_group

        drawn = [Drawn(s, detect_space_group(s, CHECK_SYMPREC), 1) for s in (c.info.to_structure() for c in flat)]
    else:
        drawn = engine.refine([c.info for c in flat], seed, diff_ratio) if flat else []
    results = iter(Provenance(space_group=c.template_space_group, seed=seed, detected_space_group=d.detected_space_group,
                              attempts=d.attempts, wyckoff=wyckoff_text(c.info.species, c.info.wyckoff_letters),
                              formula_units=c.formula_units, source="template", rank=c.rank, score=float(c.score),
                              template=c.material_id, template_space_group=c.template_space_group,
                              template_wyckoff=c.template_wyckoff, substitution=dict(c.substitution),
                              diff_ratio=diff_ratio).attach(d.structure)
                   for c, d in zip(flat, drawn, strict=True))
    out = [[next(results) for _ in cands] for cands in chosen]
    missing = [i for i, cands in enumerate(chosen) if not cands]
    if missing:
        fallback = _predict_enumerated(engine, folder, [formulas[i] for i in missing], [comps[i] for i in missing],
                                       index.max_atoms, top_k, seed)
        for i, structures in zip(missing, fallback, strict=True):
            out[i] = structures
    return out


def predict_formula_dataset(engine: Engine, folder, formulas: Sequence[str], top_k: int = 1, seed: int = 0,
                            diff_ratio: float | None = None, batch_size: int = PREDICT_BATCH,
                            done: Collection[int] = (), on_batch: Callable[[list], None] | None = None,
                            progress: bool = False) -> None:
    """:func:`predict_from_formulas` over a list of formulas (``diffcsp-pp predict --csv ... --from-formula``),
    in batches of ``batch_size`` formulas seeded as the module docstring says, skipping batches
    whose every index is in ``done``. ``on_batch([(index, formula, structures)])`` gets each
    batch, ``structures`` in rank order; a formula that cannot be predicted (no template and no
    enumerated fallback) gets its ValueError there instead of a list, and the others of its batch
    are predicted one by one (same seed)."""
    _check_count(top_k, "top_k")

    def draw(idx: range, batch_seed: int) -> list:
        chunk = [formulas[i] for i in idx]
        try:
            results = predict_from_formulas(engine, folder, chunk, top_k=top_k, seed=batch_seed, diff_ratio=diff_ratio)
        except ValueError as err:
            if len(chunk) == 1:
                return [(idx[0], chunk[0], err)]
            return [r for i in idx for r in draw(range(i, i + 1), batch_seed)]
        return list(zip(idx, chunk, results, strict=True))

    for _ in run_batches(engine, draw, list(batches(len(formulas), batch_size, seed, done)), on_batch, progress,
                         "predict"):
        pass


def _predict_enumerated(engine: Engine, folder, formulas: Sequence[str], comps: Sequence[dict], max_atoms: int,
                        n: int, seed: int) -> list[list]:
    """Fallback of :func:`predict_from_formulas` for formulas without a fitting training template:
    full sampling from enumerated templates (:mod:`diffcsp_pp.retrieval.fallback`), ``n`` per
    formula, all in one sampler pass."""
    from .retrieval.fallback import enumerated_templates

    stats = folder.template_stats()
    plans = []
    for formula, comp in zip(formulas, comps, strict=True):
        ranked = enumerated_templates(comp, stats.counts, limit=n, max_atoms=max_atoms or MAX_ATOMS)
        if not ranked:
            why = f"the model has no {folder.STATS}" if not stats else \
                "no Wyckoff pattern or space group of its training templates admits it"
            raise ValueError(f"no training template of {folder.path.name} has the atom-count pattern of {formula} "
                             f"(or of a multiple), and {why}; give a space group")
        plans.append([(i % len(ranked) + 1, ranked[i % len(ranked)]) for i in range(n)])
    flat = [(rank, e, build_template(e.space_group, e.sites)) for plan in plans for rank, e in plan]
    drawn = iter(engine.draw([t for _, _, t in flat], seed))
    structures = iter(Provenance(space_group=e.space_group, seed=seed, detected_space_group=d.detected_space_group,
                                 attempts=d.attempts, wyckoff=wyckoff_text(t.species, t.wyckoff_letters),
                                 formula_units=e.formula_units, source="enumerated", rank=rank, score=e.score,
                                 rule=e.rule).attach(d.structure)
                      for (rank, e, t), d in zip(flat, drawn, strict=True))
    return [[next(structures) for _ in plan] for plan in plans]


def generate(engine: Engine, plan: Sequence[tuple[int, Sequence[str]]], seed: int = 0,
             batch_size: int = GENERATE_BATCH, done: Collection[int] = (),
             on_batch: Callable[[list], None] | None = None, progress: bool = False, devices=None,
             keep: bool = True) -> list:
    """One generated crystal per (space group, Wyckoff labels) of ``plan``, in batches (seeds: see
    the module docstring). Atom types are generated; a crystal whose types raise its group (two
    orbits of one element forming a smaller lattice) is drawn again (``attempts``).
    ``done`` / ``on_batch([(index, plan item, structure)])`` / ``devices`` / ``keep`` as in
    :func:`predict_dataset`.
    """
    import numpy as np

    _check_task(engine, "gen")
    # species are placeholders: the ab initio sampler ignores them and generates the types
    templates = [build_template(sg, [("H", lab) for lab in labels]) for sg, labels in plan]

    def draw(idx: range, batch_seed: int) -> list:
        drawn = engine.draw([templates[i] for i in idx], batch_seed)
        out = []
        for i, d in zip(idx, drawn, strict=True):
            t, s = templates[i], d.structure
            species = [s[int(a)].specie for a in np.unique(t.anchor_idx)]
            out.append((i, plan[i], Provenance(space_group=t.space_group, seed=batch_seed,
                                               detected_space_group=d.detected_space_group, attempts=d.attempts,
                                               wyckoff=wyckoff_text(species, t.wyckoff_letters)).attach(s)))
        return out

    todo = list(batches(len(templates), batch_size, seed, done))
    return _collect(len(templates), run_batches(engine, draw, todo, on_batch, progress, "generate", devices, keep), keep)


def run_batches(engine: Engine, draw: Callable[[range, int], list], todo: Sequence[tuple[range, int]],
                on_batch: Callable[[list], None] | None, progress: bool, desc: str, devices=None,
                keep: bool = True) -> Iterator[list]:
    """``draw(indices, seed)`` for every batch of ``todo``, each result handed to ``on_batch``:
    here, one batch after another, or (``devices`` given) as Lightning predict steps spread over
    processes (:func:`diffcsp_pp.sample.distributed.run_batches`; ``keep=False``: results not
    held until the end there). Yields the results."""
    if devices is not None:
        from .sample.distributed import run_batches as run_distributed

        yield from run_distributed(engine.model, draw, todo, on_batch, devices, progress, keep)
        return
    from tqdm import tqdm

    for idx, batch_seed in tqdm(todo, desc=desc, unit="batch", disable=not progress):
        result = draw(idx, batch_seed)
        if on_batch is not None:
            on_batch(result)
        yield result


def _collect(count: int, results: Iterator[list], keep: bool) -> list:
    out: list = [None] * count
    for result in results:
        if keep:
            for i, _, structure in result:
                out[i] = structure
    return out


# -------------------------------------------------------------------------------------- helpers
def model_formula(formula: str) -> dict[str, int]:
    """:func:`~diffcsp_pp.symmetry.enumerate.parse_formula`, restricted to the elements the network
    embeds (Z <= NUM_ELEMENTS): ValueError naming the element otherwise, before any sampling."""
    from .symmetry.constants import NUM_ELEMENTS
    from .symmetry.templates import atomic_number

    comp = parse_formula(formula)
    for el in comp:
        if atomic_number(el) > NUM_ELEMENTS:
            raise ValueError(f"{el} (Z = {atomic_number(el)}) in {formula!r} is beyond the elements the model knows "
                             f"(Z <= {NUM_ELEMENTS})")
    return comp


def _check_task(engine: Engine, task: str) -> None:
    if engine.task != task:
        raise ValueError("this is an ab initio generation model; prediction needs a CSP model" if task == "csp" else
                         "this is a CSP model; generate needs an ab initio (gen) model, e.g. mp20-gen")


def _check_count(n, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def _multiple_of(got: dict[str, int], comp: dict[str, int]) -> int | None:
    if set(got) != set(comp):
        return None
    ratios = {got[el] / comp[el] for el in comp}
    z = next(iter(ratios))
    return int(z) if len(ratios) == 1 and z == int(z) and z >= 1 else None


def _fitting_multiples(space_group: int, comp: dict[str, int]) -> list[int]:
    from .symmetry.enumerate import formula_unit_multiples

    g = math.gcd(*comp.values())
    reduced = {el: n // g for el, n in comp.items()}
    return formula_unit_multiples(space_group, reduced, max_atoms=MAX_ATOMS)[:8]


def _fmt(comp: dict[str, int]) -> str:
    return "".join(f"{el}{n}" for el, n in comp.items())
