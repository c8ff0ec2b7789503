"""``Provenance``: how an output structure was made; the only writer of ``Structure.properties``.

Every job of :mod:`diffcsp_pp.jobs` attaches one record to each structure it returns; the CLI's
manifest entries are these records (plus what the writer measures). Fields that do not apply to
a job are None and left out of ``properties``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Provenance:
    """How one structure was made.

    Attributes:
        space_group: the requested space group (a retrieved template's own group for prediction
            from the formula alone).
        seed: the seed of the sampler call that drew it (a batch's seed in dataset jobs).
        detected_space_group: spglib's group of the output at 1e-3 Å.
        attempts: draws it took (outputs that gained symmetry are drawn again).
        wyckoff: the Wyckoff assignment, ``"Sr:1a Ti:1b O:3c"`` (generated elements ab initio).
        formula_units: Z, formula units in the conventional cell.
        source: ``"template"`` (a retrieved training crystal) or ``"enumerated"`` (the fallback of
            prediction from the formula alone); None when the symmetry was given.
        rank, score: the template's rank (1 = best) and its score (higher = better).
        rule: how an enumerated template was found.
        template, template_space_group, template_wyckoff, substitution: the retrieved training
            crystal (material id, group, own species and positions) and the element substitution.
        diff_ratio: refinement start t₀/T (0: the substituted template itself).
    """

    space_group: int
    seed: int
    detected_space_group: int | None = None
    attempts: int | None = None
    wyckoff: str | None = None
    formula_units: int | None = None
    source: str | None = None
    rank: int | None = None
    score: float | None = None
    rule: str | None = None
    template: str | None = None
    template_space_group: int | None = None
    template_wyckoff: str | None = None
    substitution: dict | None = None
    diff_ratio: float | None = None

    def as_dict(self) -> dict:
        """The fields that apply (not None), JSON-ready."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def attach(self, structure):
        """Set ``structure.properties`` to this record; returns the structure."""
        structure.properties = self.as_dict()
        return structure


def wyckoff_text(species, labels) -> str:
    """``"Sr:1a Ti:1b O:3c"`` from parallel species and Wyckoff labels."""
    return " ".join(f"{el}:{lab}" for el, lab in zip(species, labels, strict=True))
