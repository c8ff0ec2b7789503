"""Symmetry patterns (space group + Wyckoff labels) to generate from, drawn like the paper does.

The paper's ab initio sampler takes its templates from the training set, uniformly with replacement
(METHOD §7.3), so generated crystals follow the training distribution of space groups and Wyckoff
patterns. A trained model stores that distribution in ``template_stats.json`` (pattern key
``"221:1a,1b,3c"`` -> count), so drawing patterns needs no training data at run time:

- ``space_group=None``: patterns drawn with probability proportional to their training count;
- ``space_group=G`` seen in training: patterns of G drawn by their counts within G;
- ``space_group=G`` never seen in training: a random pattern of G, built by drawing Wyckoff
  positions uniformly (a position without free parameters at most once) until the cell holds a
  number of atoms drawn from the training distribution of cell sizes (:func:`random_pattern`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..data.template_stats import TemplateStats
from ..symmetry.families import check_space_group
from ..symmetry.wyckoff import wyckoff_position, wyckoff_positions


def label_patterns(stats: TemplateStats | Mapping[str, int]) -> list[tuple[int, tuple[str, ...], int]]:
    """(space group, labels, count) of the species-free patterns of a model's template statistics."""
    return TemplateStats.of(stats).patterns()


def pattern_size(space_group: int, labels) -> int:
    """Atoms in the conventional cell of a pattern."""
    return sum(wyckoff_position(space_group, lab).multiplicity for lab in labels)


def random_pattern(space_group: int, num_atoms: int, rng: np.random.Generator, tries: int = 200) -> tuple[str, ...] | None:
    """A random Wyckoff pattern of ``space_group`` with exactly ``num_atoms`` atoms, or None.

    Positions are drawn uniformly among those that still fit; a position without free parameters
    is used at most once. Up to ``tries`` random restarts.
    """
    positions = wyckoff_positions(check_space_group(space_group))
    for _ in range(tries):
        left, used, labels = num_atoms, set(), []
        while left > 0:
            fits = [wp for wp in positions if wp.multiplicity <= left and not (wp.dof == 0 and wp.letter in used)]
            if not fits:
                break
            wp = fits[int(rng.integers(len(fits)))]
            labels.append(wp.label)
            left -= wp.multiplicity
            if wp.dof == 0:
                used.add(wp.letter)
        if left == 0:
            return tuple(labels)
    return None


def draw_patterns(stats: Mapping[str, int], n: int, space_group: int | None, rng: np.random.Generator,
                  max_atoms: int = 200) -> list[tuple[int, tuple[str, ...]]]:
    """``n`` (space group, labels) patterns to generate from (rules in the module docstring).

    Raises:
        ValueError: no training statistics for ``space_group=None``, or no pattern of the requested
            group fits the cell sizes seen in training (nor up to ``max_atoms``).
    """
    patterns = label_patterns(stats)
    if space_group is not None:
        space_group = check_space_group(space_group)
        patterns = [p for p in patterns if p[0] == space_group]
        if not patterns:
            return _unseen(stats, space_group, n, rng, max_atoms)
    if not patterns:
        raise ValueError("the model has no template statistics (template_stats.json); give a space group")
    weights = np.array([c for _, _, c in patterns], dtype=np.float64)
    picks = rng.choice(len(patterns), size=n, p=weights / weights.sum())
    return [(patterns[i][0], patterns[i][1]) for i in picks]


def _unseen(stats, space_group: int, n: int, rng: np.random.Generator, max_atoms: int):
    """Random patterns for a group the training data never showed (sizes from the training data)."""
    sizes = [pattern_size(sg, labels) for sg, labels, _ in label_patterns(stats)]
    counts = [c for _, _, c in label_patterns(stats)]
    if not sizes:
        sizes, counts = list(range(1, 21)), [1] * 20
    size_weights = np.asarray(counts, dtype=np.float64) / np.sum(counts)
    out = []
    for _ in range(n):
        pattern = None
        for _ in range(50):
            target = int(sizes[int(rng.choice(len(sizes), p=size_weights))])
            pattern = random_pattern(space_group, target, rng)
            if pattern is not None:
                break
        if pattern is None:  # the group's smallest cells may exceed every training size
            smallest = min(wp.multiplicity for wp in wyckoff_positions(space_group))
            for target in range(smallest, max_atoms + 1, smallest):
                pattern = random_pattern(space_group, target, rng)
                if pattern is not None:
                    break
        if pattern is None:
            raise ValueError(f"no Wyckoff pattern of space group {space_group} with at most {max_atoms} atoms")
        out.append((space_group, pattern))
    return out
