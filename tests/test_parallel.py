"""The one process pool (diffcsp_pp.parallel): results in input order, inline or in processes."""

from __future__ import annotations

import math

import pytest

from diffcsp_pp.parallel import ProcessPool


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_input_order(workers):
    jobs = [float(x) for x in range(40, 0, -1)]
    with ProcessPool(workers, progress=False) as pool:
        first = list(pool.map(math.sqrt, jobs, "sqrt", chunksize=3))
        second = list(pool.map(abs, [-j for j in jobs], "abs", sizes=[2] * len(jobs)))  # one pool, two maps
    assert first == [math.sqrt(j) for j in jobs]
    assert second == jobs


def test_sizes_must_match_jobs():
    with ProcessPool(1, progress=False) as pool, pytest.raises(ValueError, match="sizes"):
        list(pool.map(abs, [1, 2], "abs", sizes=[1]))
