"""keep_group: outputs with a supergroup of the requested space group are drawn again (spglib)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from diffcsp_pp.sample.engine import keep_group


def _cuni(a: float, b: float) -> Structure:
    """CuNi in Cmmm (65): Cu on 2a, Ni on 2c; with a = b the lattice is tetragonal and spglib says P4/mmm (123)."""
    return Structure(Lattice.orthorhombic(a, b, 3.6),
                     ["Cu", "Cu", "Ni", "Ni"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_supergroup_outputs_are_redrawn_and_others_kept():
    calls = []

    def draw(indices, seed):
        calls.append((list(indices), seed))
        # output 1 lands on a = b in its first two draws, output 0 is fine at once
        return [_cuni(3.6, 3.6) if i == 1 and len(calls) <= 2 else _cuni(3.6 + 0.1 * len(calls), 2.6) for i in indices]

    out = keep_group(draw, [65, 65], seed=5, retries=3)
    assert [c[0] for c in calls] == [[0, 1], [1], [1]]  # only the offender is drawn again
    assert len({c[1] for c in calls}) == 3 and calls[0][1] == 5  # a fresh stream per round
    assert [d.detected_space_group for d in out] == [65, 65]
    assert [d.attempts for d in out] == [1, 3]
    assert out[0].structure.lattice.a == pytest.approx(3.7)
    assert all(d.structure.properties == {} for d in out)  # provenance is the jobs' to write  # the first draw of output 0 is kept


def test_gives_up_after_the_last_round_and_says_so():
    out = keep_group(lambda idx, seed: [_cuni(3.6, 3.6) for _ in idx], [65], seed=0, retries=2)
    assert out[0].detected_space_group == 123 and out[0].attempts == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="retries"):
        keep_group(lambda idx, seed: [], [65], seed=0, retries=-1)
    with pytest.raises(ValueError, match="draw returned"):
        keep_group(lambda idx, seed: [], [65], seed=0)
