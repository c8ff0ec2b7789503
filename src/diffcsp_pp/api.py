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
  pattern of positions alone occurred, then by fewer orbits, then by enumeration order; ``n``
  predictions cycle over the top assignments, best first.
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
from .symmetry.analyze import detect_space_group
from .symmetry.enumerate import parse_formula, wyckoff_assignments
from .symmetry.families import check_space_group
from .symmetry.templates import SymmetryTemplate, build_template
from .symmetry.wyckoff import wyckoff_position

#: Largest conventional cell the API builds from a reduced formula.
MAX_ATOMS = 200
#: Spglib tolerance (Å) of the symmetry check of every output.
CHECK_SYMPREC = 1e-3
#: Bundled models (package data, added as they are trained): name -> folder under ``pretrained/``.
BUNDLED = {"mp20-csp": "mp20-csp", "mp20-gen": "mp20-gen", "perov5-csp": "perov5-csp"}
DEFAULT_CSP = "mp20-csp"

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
                counts = self.pattern_counts

                def rank(item):
                    labels, species = [lab for _, lab in item[1]], [el for el, _ in item[1]]
                    return (-counts.get(pattern_key(number, labels, species), 0),
                            -counts.get(pattern_key(number, labels), 0), len(item[1]), item[0])

                ranked = sorted(enumerate(found), key=rank)
                return [(a, z) for _, a in ranked[:limit]]
        fits = _fitting_multiples(number, comp)
        hint = f"; formula-unit multiples that fit: {', '.join(map(str, fits))}" if fits else "; no multiple up to " \
               f"{MAX_ATOMS} atoms fits"
        raise ValueError(f"{formula} admits no Wyckoff assignment in space group {number}{hint}")

    # ------------------------------------------------------------------------------- predict
    def predict(self, formula: str, space_group: int | None = None, wyckoff=None, n: int = 1,
                seed: int | None = None, steps: int | None = None, step_lr: float | None = None):
        """``n`` structures of ``formula`` in ``space_group`` (pymatgen Structures, conventional cell)."""
        if space_group is None:
            raise ValueError("space_group is required (prediction from the formula alone is not available yet)")
        return self.predict_many([formula], [space_group], [wyckoff], n=n, seed=seed, steps=steps, step_lr=step_lr)[0]

    def predict_many(self, formulas: Sequence[str], space_groups: Sequence[int], wyckoffs: Sequence | None = None,
                     n: int = 1, seed: int | None = None, steps: int | None = None, step_lr: float | None = None):
        """Batched :meth:`predict`: one list of ``n`` structures per formula, in one sampler pass.
        ``space_groups`` and ``wyckoffs`` (None entries: enumerate) are given per formula."""
        import numpy as np

        from .diffusion.process import respaced_timesteps
        from .sample.generate import default_step_lr, sample_structures

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
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        timesteps = respaced_timesteps(self.config.diffusion.timesteps, steps)
        lr = step_lr if step_lr is not None else default_step_lr(self.config)
        structures = sample_structures(self.model, self.config.diffusion, [t for t, _, _ in flat], seed=seed,
                                       step_lr=lr, timesteps=timesteps)
        for s, (t, a, z) in zip(structures, flat, strict=True):
            s.properties.update({
                "space_group": t.space_group, "detected_space_group": detect_space_group(s, CHECK_SYMPREC),
                "wyckoff": " ".join(f"{el}:{lab}" for el, lab in zip(t.species, t.wyckoff_letters)),
                "formula_units": z, "seed": seed,
            })
        it = iter(structures)
        return [[next(it) for _ in plan] for plan in plans]


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
