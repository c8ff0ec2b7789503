"""Chemistry-aware ranking of enumerated Wyckoff assignments."""

import pytest

from diffcsp_pp.api import DiffCSPPP
from diffcsp_pp.sample.ranking import decoration_score, decorations
from tests.conftest import tiny_run_dir

# training perovskites (large cation on 1a, B cation on 1b, X on 3c) and one anti-perovskite pattern
STATS = {
    "221:1a,1b,3c": 4, "221:Ba:1a,O:3c,Ti:1b": 1, "221:Ca:1a,O:3c,Zr:1b": 1, "221:K:1a,Nb:1b,O:3c": 1,
    "221:Ga:1a,Mn:3c,N:1b": 1, "225:4a,4b": 2, "225:Cl:4b,Na:4a": 1, "225:K:4a,Br:4b": 1,
}


def test_decorations_group_by_pattern():
    known = decorations(STATS)
    assert sorted(known) == [(221, ("1a", "1b", "3c")), (225, ("4a", "4b"))]
    assert len(known[(221, ("1a", "1b", "3c"))]) == 4
    assert ({"1a": ["Ba"], "3c": ["O"], "1b": ["Ti"]}, 1) in known[(221, ("1a", "1b", "3c"))]


def test_decorations_of_one_group_are_the_filtered_whole():
    """The per-group view (parsed after a key-prefix filter) is exactly the whole view restricted to
    the group, on the bundled MP-20 statistics (group 22's prefix must not take group 221's keys)."""
    from diffcsp_pp.folder import ModelFolder

    stats = ModelFolder.resolve("mp20-csp").template_stats()
    whole = decorations(stats)
    for sg in (1, 2, 14, 22, 62, 221, 225, 227):
        assert decorations(stats, sg) == {k: v for k, v in whole.items() if k[0] == sg}, sg
    assert decorations(STATS, 22) == {}


def test_perovskite_decoration_beats_swapped_one():
    known = decorations(STATS)
    right = decoration_score(221, [("Sr", "1a"), ("Ti", "1b"), ("O", "3c")], known)
    swapped = decoration_score(221, [("Sr", "1b"), ("Ti", "1a"), ("O", "3c")], known)
    assert right > 3 * swapped > 0
    # an anti-perovskite nitride follows the Mn3GaN decoration
    anti = decoration_score(221, [("Fe", "3c"), ("Al", "1a"), ("N", "1b")], known)
    assert anti > decoration_score(221, [("Fe", "3c"), ("Al", "1b"), ("N", "1a")], known)
    # a pattern never seen scores zero
    assert decoration_score(221, [("Sr", "1a"), ("Ti", "1b"), ("O", "3d")], known) == 0.0


def test_predict_ranks_the_chemical_decoration_first(tmp_path):
    m = DiffCSPPP.load(tiny_run_dir(tmp_path / "run", stats=STATS))
    (best, z), *_ = m.templates_for("SrTiO3", 221)
    assert z == 1 and sorted(best) == [("O", "3c"), ("Sr", "1a"), ("Ti", "1b")]
    (best, _), *_ = m.templates_for("LiF", 225)
    assert sorted(best) == [("F", "4b"), ("Li", "4a")]


def test_min_assignment_cost_is_the_hungarian_optimum():
    """The permutation enumeration used for small matrices gives scipy's optimum exactly."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from diffcsp_pp.sample.ranking import min_assignment_cost

    rng = np.random.default_rng(0)
    for n in range(1, 9):
        for _ in range(20):
            cost = rng.random((n, n)) * rng.choice([1.0, 10.0])
            rows, cols = linear_sum_assignment(cost)
            assert min_assignment_cost(cost) == pytest.approx(float(cost[rows, cols].sum()), rel=1e-12, abs=1e-12)
