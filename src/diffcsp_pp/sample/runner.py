"""Where groups of crystals are sampled: one after another, in threads, or in worker processes.

The sampler (:mod:`diffcsp_pp.sample.engine`) cuts its crystals into :class:`GroupJob` s (each
with its own random stream) and hands them to a runner; the runner returns each group's arrays.
So the output depends on the jobs only, never on the runner, and the sampler never sees a
thread, a process or a compiler:

- :class:`SerialRunner`: groups one after another in this process (a few small crystals run
  with one intra-op thread: two OpenMP threads share tiny products poorly);
- :class:`ThreadRunner`: ``workers`` groups side by side in threads, one intra-op thread each
  (Perov-5's small crystals keep both cores busy this way);
- :class:`ProcessRunner`: ``workers`` spawned processes, each with a copy of the network and one
  core; the pool is kept for later calls with the same weights. As with any spawned pool, a script
  that uses it needs the ``if __name__ == "__main__":`` guard.

``compile=True`` runs the network through ``torch.compile`` (in each worker process for
:class:`ProcessRunner`); a failure of the compiler's machinery is raised as a CompileError.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..errors import CompileError, DiffCSPError

#: Below this many edges (Σ n² over all crystals) a serial run uses one intra-op thread.
SMALL_EDGES = 5_000


@dataclass(frozen=True)
class GroupJob:
    """One group of crystals to sample with its own random stream (picklable: it may run in a
    worker process). ``run(model)`` returns (lattices [B, 3, 3], frac coords [N, 3], types [N],
    batch index [N]) as numpy arrays."""

    templates: tuple
    diffusion: object  # DiffusionConfig
    seed: int
    step_lr: float
    timesteps: tuple | None
    network_dtype: torch.dtype | None
    fourier_plan: bool
    init: object = None  # picklable callable (sched, batch, generator) -> (k, x, types), or None
    task: str | None = None  # "csp" or "gen" (None: the network's)

    @property
    def edges(self) -> int:
        return int(sum(int(t.num_atoms) ** 2 for t in self.templates))

    def run(self, model):
        from ..data.batch import CrystalDataset
        from ..diffusion.process import Schedules, sample
        from ..symmetry.lattice_k import lattice_from_k

        device = next(model.parameters()).device
        batch = CrystalDataset(list(self.templates)).collate(list(range(len(self.templates)))).to(device)
        sched = Schedules(self.diffusion).to(device)
        gen = torch.Generator(device=batch.frac_coords.device).manual_seed(self.seed)
        start = self.init(sched, batch, gen) if self.init is not None else None
        k, x, types = sample(model, sched, batch, gen, self.step_lr, self.timesteps, init=start,
                             network_dtype=self.network_dtype, fourier_plan=self.fourier_plan, task=self.task)
        return (lattice_from_k(k.double().cpu().numpy()), x.double().cpu().numpy(), types.cpu().numpy(),
                batch.batch_idx.cpu().numpy())


class Runner:
    """Runs GroupJobs on a network: ``map(model, jobs)`` yields (job index, result) in any order."""

    compile: bool = False

    def map(self, model, jobs: Sequence[GroupJob]) -> Iterator[tuple[int, tuple]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds (worker processes)."""


class SerialRunner(Runner):
    """One group after another in this process."""

    def __init__(self, compile: bool = False):
        self.compile = compile

    def map(self, model, jobs):
        net = compiled(model) if self.compile else model
        device = next(model.parameters()).device
        threads = torch.get_num_threads()
        if device.type == "cpu" and sum(j.edges for j in jobs) < SMALL_EDGES:
            # with other work on the cores, OpenMP threads spin on tiny products (measured: 5 atoms,
            # 2 busy cores, 30x slower)
            torch.set_num_threads(1)
        try:
            for i, job in enumerate(jobs):
                with compile_errors(self.compile):
                    result = job.run(net)
                yield i, result
        finally:
            torch.set_num_threads(threads)


class ThreadRunner(Runner):
    """``workers`` groups at once, each in a thread with one intra-op thread."""

    def __init__(self, workers: int):
        self.workers = int(workers)

    def map(self, model, jobs):
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(self.workers, len(jobs))) as pool:
                yield from enumerate(pool.map(lambda job: job.run(model), jobs))
        finally:
            torch.set_num_threads(threads)


class ProcessRunner(Runner):
    """``workers`` spawned worker processes, each holding a copy of the network (CPU)."""

    def __init__(self, workers: int, compile: bool = False):
        self.workers, self.compile = int(workers), compile

    def map(self, model, jobs):
        from concurrent.futures import BrokenExecutor, as_completed

        pool = _process_pool(getattr(model, "_orig_mod", model), self.workers, self.compile)
        futures = {pool.submit(_worker_run, job, self.compile): i for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException as err:
            for future in futures:
                future.cancel()
            # interrupted, or the pool broke: stop the workers now (groups already queued to them
            # would otherwise run to the end, and a broken pool cannot be reused); an error of one
            # group (bad input) leaves the pool for later calls
            if isinstance(err, (KeyboardInterrupt, SystemExit, BrokenExecutor, GeneratorExit)):
                shutdown_pool(kill=True)
            raise

    def close(self) -> None:
        shutdown_pool()


def runner_for(parallel: str, workers: int | None, compile: bool, device, groups: int) -> Runner:
    """The runner a SamplerConfig asks for, for ``groups`` groups on ``device``.

    ``workers`` defaults to torch's thread count; one group (or a non-CPU device) runs serially.
    A process pool is sized by the request, not by the groups of this call, so a later call with
    fewer groups (a retry round, the last batch of a CSV) reuses it instead of starting anew.
    """
    requested = torch.get_num_threads() if workers is None else int(workers)
    device = torch.device(device)
    if device.type != "cpu":
        return SerialRunner(compile)
    if parallel == "processes":
        return ProcessRunner(requested, compile)
    if min(requested, groups) <= 1:
        return SerialRunner(compile)
    if compile:
        raise ValueError("compile with several groups at once needs parallel='processes' (or workers=1)")
    return ThreadRunner(requested)


# --------------------------------------------------------------------------------- compilation
def compiled(model):
    """``torch.compile`` of the network for sampling. Shapes specialise to the first batch; a
    dimension that changes between batches (a smaller last group, other crystal sizes) becomes
    symbolic at the first recompilation, so a run compiles a few times at most."""
    return torch.compile(model, dynamic=None)


@contextlib.contextmanager
def compile_errors(compile_network: bool):
    """With a compiled network, a failure of torch.compile's machinery becomes a CompileError."""
    try:
        yield
    except (DiffCSPError, ValueError, KeyboardInterrupt):
        raise
    except Exception as err:
        module = type(err).__module__ or ""
        if compile_network and module.startswith(("torch._dynamo", "torch._inductor")):
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CompileError(f"torch.compile could not build the network ({type(err).__name__}: {first[:200]}); "
                               "sample without --compile / compile_network") from None
        raise


# ------------------------------------------------------------------------------ worker processes
#: The pool of worker processes and the weights it holds (kept between calls).
_POOL: dict = {}
#: In a worker process: its copy of the network.
_WORKER: dict = {}


def _weights_key(model) -> tuple:
    """Identifies a model's current weights: object, storage, in-place version and a checksum."""
    params = list(model.parameters())
    checksum = float(sum(p.detach().double().sum() for p in params)) if params else 0.0
    return (id(model), tuple((p.data_ptr(), p._version) for p in params), checksum)


def shutdown_pool(kill: bool = False) -> None:
    """Stop the worker pool; ``kill`` terminates the workers at once (their current and queued groups
    are dropped) instead of letting them finish the group they run."""
    pool = _POOL.pop("pool", None)
    _POOL.clear()
    if pool is None:
        return
    if kill:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=not kill, cancel_futures=True)


atexit.register(shutdown_pool)


def _process_pool(model, workers: int, compile_network: bool):
    """A pool of ``workers`` spawned processes holding a copy of ``model`` (reused while the model,
    its weights and the options stay the same)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    key = (_weights_key(model), workers, compile_network)
    if _POOL and _POOL["pid"] != os.getpid():
        _POOL.clear()  # a forked child's copy of its parent's pool: not this process's to stop or use
    # a pool whose worker died (killed, out of memory) is broken for good: start a new one
    if _POOL.get("key") != key or getattr(_POOL.get("pool"), "_broken", False):
        shutdown_pool(kill=True)
        state = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(model.config.to_dict(), state, compile_network, os.getpid()))
        _POOL.update(key=key, pool=pool, pid=os.getpid())
    return _POOL["pool"]


def _init_worker(config: dict, state: dict, compile_network: bool, parent: int) -> None:
    import signal

    from ..allocator import tune_allocator
    from ..model.cspnet import CSPNet, ModelConfig

    # Ctrl-C in a terminal reaches the whole process group: the parent handles it (and stops the
    # workers), a worker must not die of it on its own (that would break the pool)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_allocator()
    torch.set_num_threads(1)  # one core per worker: small products do not share well between threads
    _exit_with_parent(parent)
    net = CSPNet(ModelConfig(**config)).to(next(iter(state.values())).dtype)
    net.load_state_dict(state)
    _WORKER["model"] = compiled(net.eval()) if compile_network else net.eval()


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed stops at once instead of finishing its queued work."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@torch.no_grad()
def _worker_run(job: GroupJob, compile_network: bool):
    with compile_errors(compile_network):
        return job.run(_WORKER["model"])


__all__ = ["GroupJob", "Runner", "SerialRunner", "ThreadRunner", "ProcessRunner", "runner_for", "compiled",
           "shutdown_pool"]
