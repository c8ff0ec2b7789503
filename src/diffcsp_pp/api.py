"""``DiffCSPPP``: predict crystal structures for a formula in a space group (CHGNet-style API).

    from diffcsp_pp import DiffCSPPP
    model = DiffCSPPP.load("runs/perov5-csp")        # a run directory, or a bundled model by name
    structures = model.predict("SrTiO3", space_group=221, n=2, seed=0)

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
- Every output is checked with spglib (1e-3 Å) and carries, in ``structure.properties``, the space
  group requested and detected, the Wyckoff assignment, Z and the seed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError
from .symmetry.enumerate import parse_formula, wyckoff_assignments
from .symmetry.families import check_space_group
from .symmetry.templates import SymmetryTemplate, build_template
from .symmetry.wyckoff import wyckoff_position

#: Largest conventional cell the API builds from a reduced formula.
MAX_ATOMS = 200
#: Bundled models (package data, added as they are trained): name -> folder under ``pretrained/``.
BUNDLED = {"mp20-csp": "mp20-csp", "mp20-gen": "mp20-gen", "perov5-csp": "perov5-csp", "perov5-csp-small": "perov5-csp-small"}
DEFAULT_CSP = "mp20-csp"
DEFAULT_GEN = "mp20-gen"

_SITE = re.compile(r"^([A-Z][a-z]?):(\d*[a-zA])$")


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


def pattern_key(space_group: int, labels: Sequence[str], species: Sequence[str] | None = None) -> str:
    """Key of a template pattern: ``"221:1a,1b,3c"`` (labels sorted) or, with species,
    ``"221:O:3c,Sr:1a,Ti:1b"`` (element:label pairs sorted)."""
    if species is None:
        return f"{space_group}:{','.join(sorted(labels))}"
    return f"{space_group}:{','.join(sorted(f'{el}:{lab}' for el, lab in zip(species, labels, strict=True)))}"


class DiffCSPPP:
    """A trained DiffCSP++ model, ready to predict."""

    def __init__(self, model, config, path: Path, device: str = "cpu"):
        self.model, self.config, self.path, self.device = model, config, path, device
        stats = path / "template_stats.json"
        self.pattern_counts: dict[str, int] = json.loads(stats.read_text()) if stats.is_file() else {}
        self._decorations = None  # species-resolved training decorations, built on first use

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> DiffCSPPP:
        """A bundled model by name (default: the MP-20 CSP model) or a run directory."""
        from .sample.generate import load_run

        name = DEFAULT_CSP if name_or_path is None else name_or_path
        path = Path(name)
        if not path.exists():
            if str(name) not in BUNDLED:
                raise FileNotFoundError(f"no model at {name!r}: not a run directory, and bundled models are {', '.join(BUNDLED)}")
            path = Path(__file__).parent / "pretrained" / BUNDLED[str(name)]
            if not (path / "model.safetensors").is_file():
                raise FileNotFoundError(f"the bundled model {name!r} is not part of this release yet; pass a run directory")
        model, cfg = load_run(path, device=device)
        return cls(model, cfg, path, device)

    # ------------------------------------------------------------------------------ templates
    def templates_for(self, formula: str, space_group: int, wyckoff=None, limit: int = 5) -> list[tuple[list, int]]:
        """Candidate (assignment, Z) pairs, best first (see the module docstring)."""
        number = check_space_group(space_group)
        comp = parse_formula(formula)
        reduced = math.gcd(*comp.values()) == 1
        if wyckoff is not None:
            sites = parse_wyckoff(wyckoff)
            build_template(number, sites)  # validates letters and elements
            got: dict[str, int] = {}
            for el, letter in sites:
                got[el] = got.get(el, 0) + wyckoff_position(number, letter).multiplicity
            z = _multiple_of(got, comp) if reduced else (1 if got == comp else None)
            if z is None:
                raise ValueError(f"Wyckoff assignment {wyckoff!r} gives {_fmt(got)}, which does not add up to {formula}"
                                 + (" (or a multiple of it)" if reduced else ""))
            return [(sites, z)]
        for z in (range(1, MAX_ATOMS // sum(comp.values()) + 1) if reduced else [1]):
            found = wyckoff_assignments(number, {el: n * z for el, n in comp.items()}, limit=2000)
            if found:
                from .sample.ranking import decoration_score, decorations

                counts = self.pattern_counts
                if self._decorations is None:
                    self._decorations = decorations(counts)

                def rank(item, counts=counts):
                    labels, species = [lab for _, lab in item[1]], [el for el, _ in item[1]]
                    return (-counts.get(pattern_key(number, labels, species), 0),
                            -counts.get(pattern_key(number, labels), 0),
                            -decoration_score(number, item[1], self._decorations), len(item[1]), item[0])

                ranked = sorted(enumerate(found), key=rank)
                return [(a, z) for _, a in ranked[:limit]]
        fits = _fitting_multiples(number, comp)
        hint = f"; formula-unit multiples that fit: {', '.join(map(str, fits))}" if fits else "; no multiple up to " \
               f"{MAX_ATOMS} atoms fits"
        raise ValueError(f"{formula} admits no Wyckoff assignment in space group {number}{hint}")

    # ------------------------------------------------------------------------------- predict
    def predict(self, formula: str, space_group: int | None = None, wyckoff=None, n: int = 1,
                seed: int | None = None, steps: int | None = None, step_lr: float | None = None,
                precision: str = "fp32", diff_ratio: float | None = None):
        """``n`` structures of ``formula`` (pymatgen Structures, conventional cell).

        With ``space_group``: ``n`` samples in that group (see the module docstring).

        Without ``space_group`` (prediction from the formula alone, CSPML-style; METHOD §7.2): the
        training crystals whose sorted per-element counts equal the formula's (or a multiple's) are
        ranked by the model's template scorer, their elements substituted (Hungarian assignment
        within each count class), and each is refined with partial noise from t₀ = T·``diff_ratio``
        (0.1: 100 steps, 200 network evaluations; ``steps`` respaces them). ``diff_ratio=0`` returns
        the substituted templates themselves ("template only", no network). The default (None) is
        the model's measured choice, ``formula_diff_ratio`` in its ``card.json`` (the one with the
        higher validated top-1 match rate; docs/RESULTS.md), else the paper's 0.1.
        ``n`` means **top-n**: structure i is the refinement of the i-th ranked template (n = 1:
        top-1); with fewer than ``n`` candidates the ranked list is cycled (new noise) when refining,
        and only the distinct candidates are returned with ``diff_ratio=0``. Each
        structure's ``properties`` hold ``source="template"``, ``rank``, ``score`` (higher =
        better), ``template`` (its material id), ``template_space_group``, ``template_wyckoff``,
        ``substitution`` (template element -> query element), ``formula_units``, ``space_group``
        (= the template's), ``detected_space_group``, ``wyckoff``, ``diff_ratio`` and ``seed``.
        Needs ``template_index.npz`` in the model folder (``scripts/build_template_index.py``).

        If no training crystal has the formula's count pattern, templates are enumerated instead
        (:mod:`diffcsp_pp.retrieval.fallback`: training Wyckoff patterns that can hold the
        composition, most frequent first; else the training space groups, most frequent first,
        smallest cell and fewest orbits) and sampled from pure noise; those outputs say
        ``source="enumerated"``. ValueError if even that finds nothing (never a silent P1).
        """
        if space_group is None:
            return self._predict_from_formula(formula, wyckoff, n, seed, steps, step_lr, precision, diff_ratio)
        return self.predict_many([formula], [space_group], [wyckoff], n=n, seed=seed, steps=steps, step_lr=step_lr,
                                 precision=precision)[0]

    def _template_index(self):
        """(TemplateIndex, Scorer) of the model folder, loaded once."""
        cached = getattr(self, "_retrieval", None)
        if cached is None:
            from .retrieval.index import INDEX_FILE, TemplateIndex
            from .retrieval.scorer import Scorer

            path = self.path / INDEX_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: prediction from the formula alone needs the model's template index; build it "
                    f"with `python scripts/build_template_index.py --model {self.path} --train TRAIN.csv`, or give a "
                    "space group")
            cached = self._retrieval = (TemplateIndex.load(path), Scorer.load(self.path))
        return cached

    @property
    def formula_diff_ratio(self) -> float:
        """Default ``diff_ratio`` of :meth:`predict` from the formula alone (see there)."""
        from .sample.generate import card_value
        from .sample.refine import DEFAULT_DIFF_RATIO

        value = card_value(self.path, "formula_diff_ratio")
        return DEFAULT_DIFF_RATIO if value is None else float(value)

    def _predict_from_formula(self, formula, wyckoff, n, seed, steps, step_lr, precision, diff_ratio):
        """Template retrieval + partial-noise refinement, or the enumerated fallback (see :meth:`predict`)."""

        from .retrieval.retrieve import retrieve
        from .sample.generate import default_step_lr, keep_group
        from .sample.refine import refine_structures

        if self.config.task != "csp":
            raise ValueError(f"{self.path} is an ab initio generation model; predict needs a CSP model")
        if wyckoff is not None:
            raise ValueError("a Wyckoff assignment needs a space group")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        diff_ratio = self.formula_diff_ratio if diff_ratio is None else diff_ratio
        if diff_ratio != 0 and not (isinstance(diff_ratio, (int, float)) and 0 < diff_ratio < 1):
            raise ValueError(f"diff_ratio must be 0 (template only) or in (0, 1), got {diff_ratio!r}")
        comp = parse_formula(formula)
        index, scorer = self._template_index()
        seed = _seed(seed)
        lr = step_lr if step_lr is not None else default_step_lr(self.config, self.path)
        candidates = retrieve(index, scorer, comp, top_k=n, max_atoms=MAX_ATOMS)
        if not candidates:
            return self._predict_enumerated(formula, comp, index.max_atoms, n, seed, steps, lr, precision)
        if diff_ratio == 0:  # template only: the substituted templates, exactly symmetric, no sampling to redo
            chosen = candidates[:n]
            structures = keep_group(lambda idx, sd: [chosen[i].info.to_structure() for i in idx],
                                    [c.template_space_group for c in chosen], seed, retries=0)
        else:
            chosen = [candidates[i % len(candidates)] for i in range(n)]
            structures = keep_group(
                lambda idx, sd: refine_structures(self.model, self.config.diffusion, [chosen[i].info for i in idx],
                                                  seed=sd, step_lr=lr, diff_ratio=diff_ratio, steps=steps,
                                                  precision=precision),
                [c.template_space_group for c in chosen], seed)
        for s, c in zip(structures, chosen, strict=True):
            s.properties.update({
                **c.provenance(), "space_group": c.template_space_group,
                "wyckoff": " ".join(f"{el}:{lab}" for el, lab in zip(c.info.species, c.info.wyckoff_letters, strict=True)),
                "diff_ratio": diff_ratio, "seed": seed,
            })
        return structures

    def _predict_enumerated(self, formula, comp, max_atoms, n, seed, steps, lr, precision):
        """Fallback of :meth:`predict` without a fitting training template: full sampling from
        enumerated templates (:mod:`diffcsp_pp.retrieval.fallback`)."""
        from .diffusion.process import respaced_timesteps
        from .retrieval.fallback import enumerated_templates
        from .sample.generate import keep_group, sample_structures

        ranked = enumerated_templates(comp, self.pattern_counts, limit=n, max_atoms=max_atoms or MAX_ATOMS)
        if not ranked:
            why = "the model has no template_stats.json" if not self.pattern_counts else \
                "no Wyckoff pattern or space group of its training templates admits it"
            raise ValueError(f"no training template of {self.path.name} has the atom-count pattern of {formula} "
                             f"(or of a multiple), and {why}; give a space group")
        chosen = [ranked[i % len(ranked)] for i in range(n)]
        templates = [build_template(e.space_group, e.sites) for e in chosen]
        timesteps = respaced_timesteps(self.config.diffusion.timesteps, steps)
        structures = keep_group(
            lambda idx, sd: sample_structures(self.model, self.config.diffusion, [templates[i] for i in idx], seed=sd,
                                              step_lr=lr, timesteps=timesteps, precision=precision),
            [t.space_group for t in templates], seed)
        for i, (s, e, t) in enumerate(zip(structures, chosen, templates, strict=True)):
            s.properties.update({
                "source": "enumerated", "rank": i % len(ranked) + 1, "score": e.score, "rule": e.rule,
                "space_group": e.space_group,
                "wyckoff": " ".join(f"{el}:{lab}" for el, lab in zip(t.species, t.wyckoff_letters, strict=True)),
                "formula_units": e.formula_units, "seed": seed,
            })
        return structures

    def predict_many(self, formulas: Sequence[str], space_groups: Sequence[int], wyckoffs: Sequence | None = None,
                     n: int = 1, seed: int | None = None, steps: int | None = None, step_lr: float | None = None,
                     precision: str = "fp32", parallel: str = "threads", compile_network: bool = False):
        """Batched :meth:`predict`: one list of ``n`` structures per formula, in one sampler pass.
        ``space_groups`` and ``wyckoffs`` (None entries: enumerate) are given per formula.
        ``parallel`` / ``compile_network``: how the sampler groups run (threads or one worker process
        per core; ``torch.compile``), see :func:`~diffcsp_pp.sample.generate.sample_structures`."""

        from .diffusion.process import respaced_timesteps
        from .sample.generate import default_step_lr, keep_group, sample_structures

        if self.config.task != "csp":
            raise ValueError(f"{self.path} is an ab initio generation model; predict needs a CSP model")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        wyckoffs = [None] * len(formulas) if wyckoffs is None else list(wyckoffs)
        if not (len(formulas) == len(space_groups) == len(wyckoffs)):
            raise ValueError("formulas, space_groups and wyckoffs must have the same length")
        plans: list[list[tuple[SymmetryTemplate, list, int]]] = []
        for formula, sg, w in zip(formulas, space_groups, wyckoffs, strict=True):
            candidates = self.templates_for(formula, sg, w)
            chosen = [candidates[i % len(candidates)] for i in range(n)]
            plans.append([(build_template(sg, a), a, z) for a, z in chosen])
        flat = [p for plan in plans for p in plan]
        seed = _seed(seed)
        timesteps = respaced_timesteps(self.config.diffusion.timesteps, steps)
        lr = step_lr if step_lr is not None else default_step_lr(self.config, self.path)
        structures = keep_group(
            lambda idx, sd: sample_structures(self.model, self.config.diffusion, [flat[i][0] for i in idx], seed=sd,
                                              step_lr=lr, timesteps=timesteps, precision=precision,
                                              parallel=parallel, compile_network=compile_network),
            [t.space_group for t, _, _ in flat], seed)
        for s, (t, a, z) in zip(structures, flat, strict=True):
            s.properties.update({
                "space_group": t.space_group,
                "wyckoff": " ".join(f"{el}:{lab}" for el, lab in zip(t.species, t.wyckoff_letters)),
                "formula_units": z, "seed": seed,
            })
        it = iter(structures)
        return [[next(it) for _ in plan] for plan in plans]


    # ------------------------------------------------------------------------------ generate
    def generate(self, n: int, space_group: int | None = None, seed: int | None = None, wyckoff=None,
                 steps: int | None = None, step_lr: float | None = None, precision: str = "fp32"):
        """``n`` new crystals from an ab initio model (pymatgen Structures, conventional cell).

        Space groups and Wyckoff patterns are drawn from the model's training distribution
        (``template_stats.json``; see :mod:`diffcsp_pp.sample.patterns`), restricted to
        ``space_group`` when given; ``wyckoff`` fixes the pattern (labels such as ``"2a 2d 4g"``;
        requires ``space_group``). Atom types are generated. Each structure's ``properties`` hold the
        space group requested and detected, the Wyckoff pattern with the generated elements, and the seed.
        """
        return self.generate_many(self._gen_plan(n, space_group, seed, wyckoff), seed=seed, steps=steps,
                                  step_lr=step_lr, precision=precision)

    def _gen_plan(self, n, space_group, seed, wyckoff) -> list[tuple[int, tuple[str, ...]]]:
        """The (space group, labels) of each of ``n`` crystals (deterministic for a given seed)."""
        import numpy as np

        from .sample.patterns import draw_patterns

        if self.config.task != "gen":
            raise ValueError(f"{self.path} is a CSP model; generate needs an ab initio (gen) model, e.g. mp20-gen")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if wyckoff is not None:
            if space_group is None:
                raise ValueError("a Wyckoff pattern needs a space group")
            number = check_space_group(space_group)
            tokens = wyckoff.replace(",", " ").split() if isinstance(wyckoff, str) else [str(w) for w in wyckoff]
            if not tokens:
                raise ValueError(f"empty Wyckoff pattern {wyckoff!r}")
            labels = tuple(wyckoff_position(number, t).label for t in tokens)
            build_template(number, [("H", lab) for lab in labels])  # fixed positions used twice -> ValueError
            return [(number, labels)] * n
        rng = np.random.default_rng(None if seed is None else [_seed(seed), 7])
        return draw_patterns(self.pattern_counts, n, space_group, rng)

    def generate_many(self, plan: Sequence[tuple[int, Sequence[str]]], seed: int | None = None,
                      steps: int | None = None, step_lr: float | None = None, progress: bool = False,
                      precision: str = "fp32", retries: int | None = None, parallel: str = "threads",
                      compile_network: bool = False):
        """One generated crystal per (space group, Wyckoff labels) item of ``plan``, in one sampler pass.

        ``parallel`` / ``compile_network``: how the sampler groups run (threads or one worker process
        per core; ``torch.compile``), see :func:`~diffcsp_pp.sample.generate.sample_structures`.

        Coordinates and lattice keep the template's group by construction, but generated *types* can
        raise it: two orbits that receive the same element may together form a smaller, more
        symmetric lattice (Pt on 4a and 4b of Fm-3m is a simple cubic Pt lattice, Pm-3m). Crystals
        whose spglib group (1e-3 Å) is not the requested one are sampled again with a new random
        stream, up to ``retries`` rounds (default: :func:`~diffcsp_pp.sample.generate.keep_group`'s;
        predict does the same); ``properties["attempts"]`` says how many draws a crystal
        took, and a crystal still off after the last round is returned as is (its
        ``detected_space_group`` shows it; the manifest's rate counts it).
        """
        import numpy as np

        from .diffusion.process import respaced_timesteps
        from .sample.generate import RETRIES, default_step_lr, keep_group, sample_structures

        if self.config.task != "gen":
            raise ValueError(f"{self.path} is a CSP model; generate needs an ab initio (gen) model, e.g. mp20-gen")
        # species are placeholders: the ab initio sampler ignores them and generates the types
        templates = [build_template(sg, [("H", lab) for lab in labels]) for sg, labels in plan]
        seed = _seed(seed)
        timesteps = respaced_timesteps(self.config.diffusion.timesteps, steps)
        lr = step_lr if step_lr is not None else default_step_lr(self.config, self.path)
        structures = keep_group(
            lambda idx, sd: sample_structures(self.model, self.config.diffusion, [templates[i] for i in idx], seed=sd,
                                              step_lr=lr, timesteps=timesteps, progress=progress, precision=precision,
                                              parallel=parallel, compile_network=compile_network),
            [t.space_group for t in templates], seed, RETRIES if retries is None else retries)
        for s, t in zip(structures, templates, strict=True):
            anchors = np.unique(t.anchor_idx)
            s.properties.update({
                "space_group": t.space_group,
                "wyckoff": " ".join(f"{s[int(a)].specie}:{lab}" for a, lab in zip(anchors, t.wyckoff_letters)),
                "seed": seed,
            })
        return structures


def _seed(seed) -> int:
    """A user's seed as a non-negative int (ValueError otherwise); None draws one."""
    import numpy as np

    if seed is None:
        return int(np.random.default_rng().integers(2**31))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


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


__all__ = ["DiffCSPPP", "parse_wyckoff", "pattern_key", "DataError"]
