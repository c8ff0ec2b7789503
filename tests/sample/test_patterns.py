"""Drawing (space group, Wyckoff pattern) templates for ab initio generation."""

from collections import Counter

import numpy as np
import pytest

from diffcsp_pp.sample.patterns import draw_patterns, label_patterns, pattern_size, random_pattern
from diffcsp_pp.symmetry.templates import build_template
from diffcsp_pp.symmetry.wyckoff import wyckoff_positions

STATS = {"221:1a,1b,3c": 30, "221:O:3c,Sr:1a,Ti:1b": 30, "225:4a,4b": 10, "225:Cl:4b,Na:4a": 10}


def test_label_patterns_skip_species_keys():
    assert sorted(label_patterns(STATS)) == [(221, ("1a", "1b", "3c"), 30), (225, ("4a", "4b"), 10)]


def test_draw_follows_training_frequencies():
    rng = np.random.default_rng(0)
    drawn = Counter(sg for sg, _ in draw_patterns(STATS, 4000, None, rng))
    assert drawn.keys() == {221, 225}
    assert abs(drawn[221] / 4000 - 0.75) < 0.03  # 30 : 10


def test_draw_restricted_to_group():
    rng = np.random.default_rng(1)
    assert set(draw_patterns(STATS, 50, 225, rng)) == {(225, ("4a", "4b"))}


def test_draw_unseen_group_gives_valid_patterns_of_training_sizes():
    rng = np.random.default_rng(2)
    sizes = {pattern_size(sg, labels) for sg, labels, _ in label_patterns(STATS)}  # {5, 8}
    for sg, labels in draw_patterns(STATS, 20, 62, rng):
        assert sg == 62
        assert pattern_size(62, labels) in sizes | {4 * k for k in range(1, 51)}
        build_template(62, [("H", lab) for lab in labels])  # fixed positions at most once


@pytest.mark.parametrize("sg,n", [(1, 7), (62, 12), (225, 8), (194, 6), (230, 24)])
def test_random_pattern_adds_up_and_uses_fixed_positions_once(sg, n):
    rng = np.random.default_rng(sg)
    fixed = {wp.label for wp in wyckoff_positions(sg) if wp.dof == 0}
    for _ in range(10):
        labels = random_pattern(sg, n, rng)
        assert labels is not None
        assert pattern_size(sg, labels) == n
        used_fixed = [lab for lab in labels if lab in fixed]
        assert len(used_fixed) == len(set(used_fixed))


def test_random_pattern_impossible_size():
    # 230 (Ia-3d): the smallest orbit has 16 atoms
    assert random_pattern(230, 5, np.random.default_rng(0), tries=5) is None


def test_no_stats_needs_space_group():
    with pytest.raises(ValueError, match="template statistics"):
        draw_patterns({}, 3, None, np.random.default_rng(0))
