"""Chemistry-aware ranking of enumerated Wyckoff assignments."""

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
