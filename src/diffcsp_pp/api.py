"""``DiffCSPPP``: a trained model and the jobs it runs (CHGNet-style API).

    from diffcsp_pp import DiffCSPPP, SamplerConfig
    model = DiffCSPPP.load("perov5-csp")                     # a bundled model by name, or a run directory
    structures = model.predict("SrTiO3", 221, n=2, seed=0)   # formula in a space group
    model.predict(["SrTiO3", "NaCl"], [221, 225], seed=0)     # many at once: one list per formula
    model.predict_from_formula("SrTiO3", top_k=3)             # formula alone: retrieved templates
    DiffCSPPP.load("mp20-gen").generate(10, space_group=225)  # ab initio generation
    model.predict("SrTiO3", 221, sampler=SamplerConfig(steps=100, precision="bf16"))

Rules (documented choices):

- **Formula units.** A formula whose counts have a common divisor (``Sr2Ti2O6``) is taken as the
  full conventional cell. A reduced formula (``SrTiO3``) is multiplied by the smallest number of
  formula units Z for which the space group admits a Wyckoff assignment (up to ``MAX_ATOMS`` atoms).
- **Wyckoff assignment.** Given explicitly (``"Sr:1a Ti:1b O:3c"`` or ``[("Sr", "1a"), ...]``) it
  must add up to the formula (times Z for a reduced formula). Otherwise all assignments are
  enumerated and ranked by how often, in the model's training data (``template_stats.json`` of the
  run), the same elements sat on the same Wyckoff positions of the group, then how often the
  pattern of positions alone occurred, then by how closely the decoration resembles the training
  decorations of that pattern chemically (:mod:`diffcsp_pp.sample.ranking`: SrTiO3 in Pm-3m puts Sr
  on the A site like the training perovskites), then by fewer orbits, then by enumeration order;
  ``n`` predictions cycle over the top assignments, best first.
- **How to sample** is one frozen :class:`~diffcsp_pp.sample.config.SamplerConfig` (steps, γ,
  precision, compile, worker processes, retries); γ defaults to the model's (its ``config.json``).
- Every output is checked with spglib (1e-3 Å) and carries its
  :class:`~diffcsp_pp.sample.provenance.Provenance` in ``structure.properties``: the space group
  requested and detected, the Wyckoff assignment, Z, the seed, the draws it took, and for
  prediction from the formula alone the template it came from.

The job functions behind these methods are in :mod:`diffcsp_pp.jobs` (the CLI and the scripts
call the same ones).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import jobs
from .errors import DataError
from .folder import BUNDLED, DEFAULT_CSP, DEFAULT_GEN, ModelFolder
from .jobs import MAX_ATOMS, parse_wyckoff
from .sample.config import SamplerConfig

#: Old keyword arguments of the prediction methods -> SamplerConfig fields (kept one release).
_LEGACY_SAMPLER = {"steps": "steps", "step_lr": "step_lr", "precision": "precision", "parallel": "parallel",
                   "compile_network": "compile", "progress": "progress", "retries": "retries"}


def pattern_key(space_group: int, labels: Sequence[str], species: Sequence[str] | None = None) -> str:
    """Key of a template pattern (:meth:`diffcsp_pp.data.template_stats.TemplateStats.key`)."""
    from .data.template_stats import TemplateStats

    return TemplateStats.key(space_group, labels, species)


class DiffCSPPP:
    """A trained DiffCSP++ model, ready to predict or generate.

    ``sampler``: the default SamplerConfig of this object's jobs (each method also takes one).
    """

    def __init__(self, model, config, path: Path, device: str = "cpu", sampler: SamplerConfig | None = None):
        self.model, self.config, self.path, self.device = model, config, Path(path), device
        self.folder = ModelFolder(path)
        self.sampler = sampler or SamplerConfig()

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu",
             sampler: SamplerConfig | None = None) -> DiffCSPPP:
        """A bundled model by name (default: the MP-20 CSP model) or a run directory."""
        folder = ModelFolder.resolve(name_or_path, default=DEFAULT_CSP)
        model, cfg = folder.load(device)
        out = cls(model, cfg, folder.path, device, sampler)
        out.folder = folder
        return out

    # ------------------------------------------------------------------------------- the engine
    def engine(self, sampler: SamplerConfig | None = None):
        """The sampling engine of this model with ``sampler`` (default: this object's)."""
        from .sample.engine import Engine

        return Engine(self.model, self.config, sampler or self.sampler)

    @property
    def pattern_counts(self) -> dict[str, int]:
        """The training pattern counts (``template_stats.json``; :meth:`ModelFolder.template_stats`)."""
        return self.folder.template_stats().counts

    @property
    def formula_diff_ratio(self) -> float:
        """Default ``diff_ratio`` of :meth:`predict_from_formula` (the model config's ``sampler`` section)."""
        return self.config.formula_diff_ratio()

    def templates_for(self, formula: str, space_group: int, wyckoff=None, limit: int = 5) -> list[tuple[list, int]]:
        """Candidate (assignment, Z) pairs, best first (see the module docstring)."""
        return jobs.wyckoff_candidates(self.folder.template_stats(), formula, space_group, wyckoff, limit)

    def _check_task(self, task: str) -> None:
        if self.config.task != task:
            raise ValueError(f"{self.path} is an ab initio generation model; predict needs a CSP model" if task == "csp"
                             else f"{self.path} is a CSP model; generate needs an ab initio (gen) model, e.g. mp20-gen")

    def _sampler(self, sampler: SamplerConfig | None, legacy: dict, method: str) -> SamplerConfig:
        """``sampler`` with the old keyword arguments folded in (with a DeprecationWarning)."""
        unknown = set(legacy) - set(_LEGACY_SAMPLER)
        if unknown:
            raise TypeError(f"{method}() got unexpected keyword arguments {', '.join(sorted(unknown))}")
        sampler = sampler or self.sampler
        given = {_LEGACY_SAMPLER[k]: v for k, v in legacy.items() if v is not None}
        if given:
            warnings.warn(f"{method}({', '.join(k + '=' for k in legacy)}) is deprecated: pass "
                          f"sampler=SamplerConfig({', '.join(given)}=...)", DeprecationWarning, stacklevel=3)
            sampler = sampler.replace(**given)
        return sampler

    # ------------------------------------------------------------------------------- predict
    def predict(self, formula: str | Sequence[str], space_group: int | Sequence[int] | None = None, *,
                wyckoff=None, n: int = 1, seed: int | None = None, sampler: SamplerConfig | None = None,
                diff_ratio: float | None = None, **legacy):
        """``n`` structures of ``formula`` in ``space_group`` (pymatgen Structures, conventional cell).

        One formula (a string) gives a list of ``n`` structures; a list of formulas (with one space
        group each, or one for all, and optionally one ``wyckoff`` each) gives one such list per
        formula, all sampled in one pass. Rules: see the module docstring.

        Without ``space_group`` this still predicts from the formula alone, as
        :meth:`predict_from_formula` with ``top_k=n`` (deprecated: call that method).
        """
        seed = _seed(seed)
        if space_group is None:
            warnings.warn("predict(formula) without a space group is deprecated: call predict_from_formula(formula, "
                          "top_k=n)", DeprecationWarning, stacklevel=2)
            if wyckoff is not None:
                raise ValueError("a Wyckoff assignment needs a space group")
            return self.predict_from_formula(formula, top_k=n, seed=seed, diff_ratio=diff_ratio,
                                             sampler=self._sampler(sampler, legacy, "predict"))
        if diff_ratio is not None:
            raise ValueError("diff_ratio applies to prediction from the formula alone (predict_from_formula)")
        sampler = self._sampler(sampler, legacy, "predict")
        self._check_task("csp")
        if isinstance(formula, str):
            return jobs.predict(self.engine(sampler), self.folder.template_stats(), [formula], [space_group],
                                [wyckoff], n=n, seed=seed)[0]
        formulas = list(formula)
        groups = [space_group] * len(formulas) if isinstance(space_group, int) else list(space_group)
        wyckoffs = wyckoff if wyckoff is not None and not isinstance(wyckoff, str) else [wyckoff] * len(formulas)
        return jobs.predict(self.engine(sampler), self.folder.template_stats(), formulas, groups, wyckoffs, n=n,
                            seed=seed)

    def predict_from_formula(self, formula: str | Sequence[str], *, top_k: int = 1, seed: int | None = None,
                             diff_ratio: float | None = None, sampler: SamplerConfig | None = None):
        """The ``top_k`` best predictions of ``formula`` from its formula alone (CSPML-style, METHOD §7.2).

        The training crystals whose sorted per-element counts equal the formula's (or a multiple's) are
        ranked by the model's template scorer, their elements substituted (Hungarian assignment within
        each count class) — a template that matches a better-ranked one of its space group and cell
        size (the CSP benchmark's StructureMatcher) is skipped, so the ranks are distinct structures —
        and each is refined with partial noise from t₀ = T·``diff_ratio`` (0.1: 100
        steps, 200 network evaluations; the sampler's ``steps`` respaces them). ``diff_ratio=0``
        returns the substituted templates themselves ("template only", no network). The default
        (None) is the model's choice, ``sampler.formula_diff_ratio`` in its ``config.json`` (the one
        with the higher validated top-1 match rate; docs/RESULTS.md), else the paper's 0.1.
        Structure i is the refinement of the i-th ranked template (``top_k=1``: top-1); with fewer
        than ``top_k`` candidates the ranked list is cycled (new noise) when refining, and only the
        distinct candidates are returned with ``diff_ratio=0``. Each structure's ``properties``
        hold ``source="template"``, ``rank``, ``score`` (higher = better), ``template`` (its
        material id), ``template_space_group``, ``template_wyckoff``, ``substitution`` (template
        element -> query element), ``formula_units``, ``space_group`` (= the template's),
        ``detected_space_group``, ``wyckoff``, ``diff_ratio`` and ``seed``. Needs
        ``template_index.npz`` in the model folder (``scripts/build_template_index.py``).

        If no training crystal has the formula's count pattern, templates are enumerated instead
        (:mod:`diffcsp_pp.retrieval.fallback`: training Wyckoff patterns that can hold the
        composition, most frequent first; else the training space groups, most frequent first,
        smallest cell and fewest orbits) and sampled from pure noise; those outputs say
        ``source="enumerated"``. ValueError if even that finds nothing (never a silent P1).

        A list of formulas gives one list per formula, all sampled in one pass seeded with ``seed``.
        """
        self._check_task("csp")
        seed = _seed(seed)
        engine = self.engine(sampler)
        if isinstance(formula, str):
            return jobs.predict_from_formula(engine, self.folder, formula, top_k=top_k, seed=seed, diff_ratio=diff_ratio)
        return jobs.predict_from_formulas(engine, self.folder, list(formula), top_k=top_k, seed=seed,
                                          diff_ratio=diff_ratio)

    def predict_dataset(self, data, *, seed: int = 0, sampler: SamplerConfig | None = None,
                        batch_size: int = jobs.PREDICT_BATCH, limit: int | None = None,
                        progress: bool = False, devices=None) -> list[tuple[str, object]]:
        """One prediction per crystal of a dataset from its own space group and Wyckoff template
        (the CSP benchmark, METHOD §7.1; what ``diffcsp-pp predict --csv`` runs).

        ``data``: a CSV (``material_id``, ``cif``) or CIF folder, analysed with the model's symprec
        (cached), or a list of SymmetryInfos. Batches of ``batch_size`` rows, batch b seeded
        ``seed + b`` (:mod:`diffcsp_pp.jobs`). Returns (material id, Structure) per usable row; rows
        that cannot be predicted are skipped with a RuntimeWarning (:func:`diffcsp_pp.jobs.dataset_rows`
        lists each with its reason). ``devices`` (:class:`~diffcsp_pp.sample.distributed.Devices`): the
        batches as Lightning predict steps over processes / GPUs / nodes (under DDP each process
        returns its own rows, None for the others).
        """
        self._check_task("csp")
        infos, skipped = jobs.dataset_rows(data, self.config.symprec)
        infos = infos[:limit]
        if skipped:
            warnings.warn(f"{len(skipped)} row(s) of the dataset skipped (first: {skipped[0]}); "
                          "jobs.dataset_rows lists them all", RuntimeWarning, stacklevel=2)
        structures = jobs.predict_dataset(self.engine(sampler), infos, seed=_seed(seed), batch_size=batch_size,
                                          progress=progress, devices=devices)
        return [(i.structure_id, s) for i, s in zip(infos, structures, strict=True)]

    # ------------------------------------------------------------------------------ generate
    def generate(self, n: int, *, space_group: int | None = None, wyckoff=None, seed: int | None = None,
                 sampler: SamplerConfig | None = None, batch_size: int = jobs.GENERATE_BATCH, devices=None,
                 **legacy):
        """``n`` new crystals from an ab initio model (pymatgen Structures, conventional cell).

        Space groups and Wyckoff patterns are drawn from the model's training distribution
        (``template_stats.json``; see :mod:`diffcsp_pp.sample.patterns`), restricted to
        ``space_group`` when given; ``wyckoff`` fixes the pattern (labels such as ``"2a 2d 4g"``;
        requires ``space_group``). Atom types are generated. Crystals are sampled in batches of
        ``batch_size`` (batch b seeded ``seed + b``, as ``diffcsp-pp generate``); a crystal whose
        generated types raise its group is drawn again. Each structure's ``properties`` hold the
        space group requested and detected, the Wyckoff pattern with the generated elements, the
        seed and the draws it took. ``devices``: as in :meth:`predict_dataset`.
        """
        self._check_task("gen")
        sampler = self._sampler(sampler, legacy, "generate")
        seed = _seed(seed)
        plan = self.generation_plan(n, space_group, seed, wyckoff)
        return jobs.generate(self.engine(sampler), plan, seed=seed, batch_size=batch_size, devices=devices)

    def generation_plan(self, n: int, space_group: int | None = None, seed: int = 0,
                        wyckoff=None) -> list[tuple[int, tuple[str, ...]]]:
        """The (space group, labels) of each of ``n`` crystals (:func:`diffcsp_pp.jobs.generation_plan`)."""
        self._check_task("gen")
        return jobs.generation_plan(self.folder.template_stats(), n, space_group, _seed(seed), wyckoff)

    # ---------------------------------------------------------------- deprecated (one release)
    def predict_many(self, formulas: Sequence[str], space_groups: Sequence[int], wyckoffs: Sequence | None = None,
                     n: int = 1, seed: int | None = None, **legacy):
        """Deprecated: ``predict(formulas, space_groups, wyckoff=wyckoffs, ...)``."""
        warnings.warn("predict_many is deprecated: predict(formulas, space_groups, ...) takes lists",
                      DeprecationWarning, stacklevel=2)
        return self.predict(list(formulas), list(space_groups), wyckoff=None if wyckoffs is None else list(wyckoffs),
                            n=n, seed=seed, **legacy)

    def generate_many(self, plan: Sequence[tuple[int, Sequence[str]]], seed: int | None = None, **legacy):
        """Deprecated: one generated crystal per (space group, labels) item of ``plan``, in one batch
        (:func:`diffcsp_pp.jobs.generate`)."""
        warnings.warn("generate_many is deprecated: use generate(n, ...) or diffcsp_pp.jobs.generate",
                      DeprecationWarning, stacklevel=2)
        self._check_task("gen")
        sampler = self._sampler(None, legacy, "generate_many")
        return jobs.generate(self.engine(sampler), list(plan), seed=_seed(seed), batch_size=max(1, len(plan)))

    def _gen_plan(self, n, space_group, seed, wyckoff):
        """Deprecated name of :meth:`generation_plan`."""
        return self.generation_plan(n, space_group, 0 if seed is None else seed, wyckoff)

    def _template_index(self):
        """(TemplateIndex, Scorer) of the model folder (:meth:`ModelFolder.template_index`)."""
        return self.folder.template_index()


def _seed(seed) -> int:
    """A user's seed as a non-negative int (ValueError otherwise); None draws one."""
    import numpy as np

    if seed is None:
        return int(np.random.default_rng().integers(2**31))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


__all__ = ["DiffCSPPP", "SamplerConfig", "parse_wyckoff", "pattern_key", "DataError", "BUNDLED", "DEFAULT_CSP",
           "DEFAULT_GEN", "MAX_ATOMS"]
