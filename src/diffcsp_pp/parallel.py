"""The one process pool with a progress bar (preprocessing and evaluation).

:class:`ProcessPool` maps a picklable function over jobs in ``workers`` processes (fork where the
platform has it, else spawn), or in this process when ``workers`` is 1, yielding the results in
input order while a tqdm bar on stderr counts the work done (``sizes``: the units each job holds,
e.g. crystals per chunk). One pool can run several maps; leaving the ``with`` block ends its
processes.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence


def pool_context():
    """fork where available (the workers inherit loaded modules), else spawn."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


class ProcessPool:
    """``with ProcessPool(workers, progress) as pool: for r in pool.map(fn, jobs, desc): ...``"""

    def __init__(self, workers: int = 1, progress: bool = True, unit: str = "crystal"):
        self.workers, self.progress, self.unit, self.pool = max(1, int(workers)), progress, unit, None

    def __enter__(self) -> ProcessPool:
        if self.workers > 1:
            self.pool = pool_context().Pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def map(self, fn: Callable, jobs: Iterable, desc: str, sizes: Sequence[int] | None = None,
            chunksize: int = 1) -> Iterator:
        """``fn(job)`` for every job, in order; the bar advances by ``sizes[i]`` (default 1) per job."""
        from tqdm import tqdm

        jobs = list(jobs)
        sizes = [1] * len(jobs) if sizes is None else list(sizes)
        if len(sizes) != len(jobs):
            raise ValueError(f"{len(sizes)} sizes for {len(jobs)} jobs")
        bar = tqdm(total=sum(sizes), desc=desc, unit=self.unit, disable=not self.progress, file=sys.stderr)
        try:
            it = map(fn, jobs) if self.pool is None else self.pool.imap(fn, jobs, chunksize=chunksize)
            for result, size in zip(it, sizes, strict=True):
                yield result
                bar.update(size)
        finally:
            bar.close()
