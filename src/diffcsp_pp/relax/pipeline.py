"""Relaxation and energy ranking as a post-processing step of prediction and generation."""

from __future__ import annotations

from .engine import RelaxSettings, rank_by_energy, relax_structures, single_point_energies
from .potentials import load_potential

#: Property keys a relaxation adds or updates (copied into a writer's per-structure record).
RELAX_KEYS = ("relax", "energy_per_atom", "energy_potential", "energy_rank", "detected_space_group", "space_group")


def relax_and_rank(structures, relax: bool = True, rank: bool = False, potential=None,
                   settings: RelaxSettings | None = None, batch_size: int = 16, progress: bool = False) -> list:
    """``structures`` relaxed (``relax``; else only their single-point energies are computed) and,
    with ``rank``, ordered by energy per atom, lowest first (``properties["energy_rank"]``).

    Energies are those of the structures returned: after relaxation, or of the unrelaxed input
    where a relaxation was rejected (its ``properties["relax"]["status"]`` says why), or before any
    relaxation with ``relax=False``.
    """
    pot = load_potential(potential)
    if relax:
        out = [r.structure for r in relax_structures(structures, pot, settings, batch_size=batch_size,
                                                     progress=progress)]
    else:
        out = list(structures)
        single_point_energies(out, pot)
    return rank_by_energy(out) if rank else out


class RelaxingWriter:
    """A writer (``done()``, ``add(items)``, e.g. :class:`~diffcsp_pp.sample.writer.PredictionWriter`)
    that relaxes every batch of (name, Structure, info) items before passing it on; the info dicts
    gain the relaxation record. ``on_batch`` (optional) sees each batch's relaxed structures."""

    def __init__(self, writer, potential=None, settings: RelaxSettings | None = None, batch_size: int = 16,
                 on_batch=None):
        self.writer, self.potential, self.settings = writer, load_potential(potential), settings
        self.batch_size, self.on_batch = batch_size, on_batch

    def done(self) -> set[str]:
        return self.writer.done()

    def add(self, items) -> None:
        items = list(items)
        relaxed = relax_and_rank([s for _, s, _ in items], potential=self.potential, settings=self.settings,
                                 batch_size=self.batch_size)
        if self.on_batch is not None:
            self.on_batch(relaxed)
        self.writer.add((name, s, {**info, **{k: s.properties[k] for k in RELAX_KEYS if k in s.properties}})
                        for (name, _, info), s in zip(items, relaxed, strict=True))
