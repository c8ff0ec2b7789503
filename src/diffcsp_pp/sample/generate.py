"""Templates -> batch -> predictor-corrector sampler -> pymatgen Structures.

Weights are read from ``model.safetensors`` (never unpickled) with the run's ``config.json``.
Every output has its template's space group by construction; :func:`sample_structures` returns the
structures in template order, several per template when ``n > 1``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.batch import CrystalDataset
from ..diffusion.process import Schedules, sample
from ..errors import CompileError, DataError, DiffCSPError
from ..model.cspnet import CSPNet
from ..symmetry.lattice_k import lattice_from_k
from ..symmetry.templates import SymmetryTemplate, _symbol

#: Langevin step γ per (dataset, task) (METHOD §4.6, the official evaluation defaults).
STEP_LR = {
    ("perov_5", "csp"): 5e-7, ("carbon_24", "csp"): 5e-6, ("mp_20", "csp"): 1e-5, ("mpts_52", "csp"): 1e-5,
    ("perov_5", "gen"): 1e-6, ("carbon_24", "gen"): 1e-5, ("mp_20", "gen"): 5e-6, ("mpts_52", "gen"): 5e-6,
}


#: Below this many edges (Σ n² over all crystals) a single-group run uses one intra-op thread.
SMALL_EDGES = 5_000

#: Network precision of the sampler: name -> autocast dtype (None: the state's own dtype).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def card_value(model_dir: str | os.PathLike | None, key: str):
    """``key`` of a model folder's ``card.json`` (its measured sampler choices), or None when the
    folder, the card or the key is missing or the card is unreadable."""
    if model_dir is None:
        return None
    card = Path(model_dir) / "card.json"
    try:
        return json.loads(card.read_text()).get(key) if card.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def default_step_lr(config, model_dir: str | os.PathLike | None = None) -> float:
    """Langevin γ of a model: the ``step_lr`` its ``card.json`` states (a bundled model's γ chosen
    on its validation split) if there is one, else the official value for the run's dataset and
    task (:data:`STEP_LR`; MP-20's for unknown datasets)."""
    value = card_value(model_dir, "step_lr")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return STEP_LR.get((config.dataset or "mp_20", config.task), 1e-5)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(CSPNet in eval mode, RunConfig) from a run directory (``config.json`` + ``model.safetensors``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..train.config import RunConfig

    path = Path(path)
    config_path, weights = path / "config.json", path / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{path} is not a run directory (needs config.json and model.safetensors)")
    try:
        cfg = RunConfig.from_dict(json.loads(config_path.read_text()))
        model = CSPNet(cfg.model)
        model.load_state_dict(load_file(weights, device=str(device)))
    except (ValueError, KeyError, RuntimeError, OSError, SafetensorError) as err:
        raise DataError(f"cannot load the model in {path}: {err}") from None
    return model.to(device).eval(), cfg


def _chunks(sizes: np.ndarray, max_edges: int, max_crystals: int = 2**31) -> list[list[int]]:
    """Consecutive groups of at most ``max_crystals`` crystals whose Σ n² stays under ``max_edges``
    (at least one crystal each)."""
    groups, current, load = [], [], 0
    for i, n in enumerate(sizes):
        if current and (load + n * n > max_edges or len(current) >= max_crystals):
            groups.append(current)
            current, load = [], 0
        current.append(i)
        load += int(n * n)
    if current:
        groups.append(current)
    return groups


def _sample_group(model, sched, batch, gen_seed: int, step_lr, timesteps, init, network_dtype, fourier_plan,
                  compile_network: bool = False):
    """Sample one group (one batch) with its own random stream: (lattices [B, 3, 3], frac coords
    [N, 3], types [N], batch index [N]) as numpy arrays. ``compile_network``: ``model`` is compiled
    (a failure of torch.compile's machinery is raised as a CompileError)."""
    gen = torch.Generator(device=batch.frac_coords.device).manual_seed(gen_seed)
    start = init(sched, batch, gen) if init is not None else None
    with _compile_errors(compile_network):
        k, x, types = sample(model, sched, batch, gen, step_lr, timesteps, init=start, network_dtype=network_dtype,
                             fourier_plan=fourier_plan)
    return (lattice_from_k(k.double().cpu().numpy()), x.double().cpu().numpy(), types.cpu().numpy(),
            batch.batch_idx.cpu().numpy())


# ------------------------------------------------------------------ worker processes (parallel="processes")
#: The pool of worker processes of :func:`sample_structures` and the model it holds (kept between calls).
_POOL: dict = {}
#: In a worker process: its copy of the network.
_WORKER: dict = {}


def _weights_key(model) -> tuple:
    """Identifies a model's current weights: object, storage, in-place version and a checksum."""
    params = list(model.parameters())
    checksum = float(sum(p.detach().double().sum() for p in params)) if params else 0.0
    return (id(model), tuple((p.data_ptr(), p._version) for p in params), checksum)


def _shutdown_pool(kill: bool = False) -> None:
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


atexit.register(_shutdown_pool)


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
        _shutdown_pool(kill=True)
        state = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(model.config.to_dict(), state, compile_network, os.getpid()))
        _POOL.update(key=key, pool=pool, pid=os.getpid())
    return _POOL["pool"]


def _init_worker(config: dict, state: dict, compile_network: bool, parent: int) -> None:
    import signal

    from ..allocator import tune_allocator
    from ..model.cspnet import ModelConfig

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


def _worker_group(templates, diffusion_config, gen_seed, step_lr, timesteps, network_dtype, fourier_plan,
                  compile_network):
    batch = CrystalDataset(templates).collate(list(range(len(templates))))
    sched = Schedules(diffusion_config)
    return _sample_group(_WORKER["model"], sched, batch, gen_seed, step_lr, timesteps, None, network_dtype,
                         fourier_plan, compile_network)


@contextlib.contextmanager
def _compile_errors(compile_network: bool):
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


def compiled(model):
    """``torch.compile`` of the network for sampling. Shapes specialise to the first batch; a
    dimension that changes between batches (a smaller last group, other crystal sizes) becomes
    symbolic at the first recompilation, so a run compiles a few times at most."""
    return torch.compile(model, dynamic=None)


PARALLEL = ("threads", "processes")


@torch.no_grad()
def sample_structures(
    model: CSPNet,
    diffusion_config,
    templates: Sequence[SymmetryTemplate],
    seed: int,
    step_lr: float,
    n: int = 1,
    timesteps: Sequence[int] | None = None,
    max_edges: int = 200_000,
    progress: bool = False,
    precision: str = "fp32",
    group_size: int = 50,
    workers: int | None = None,
    init=None,
    fourier_plan: bool = True,
    parallel: str = "threads",
    compile_network: bool = False,
):
    """Sample ``n`` structures per template.

    The templates are sampled in groups of at most ``group_size`` crystals (and ``max_edges`` Σ n²),
    each with its own random stream (seeded by ``seed`` and the group index), so the output depends
    on the seed and the grouping only, not on ``workers`` (the number of groups sampled at once) nor
    on ``parallel``:

    - ``"threads"`` (default): each group in its own thread of this process, one intra-op thread each
      (default ``workers``: torch's thread count). Small crystals (Perov-5) make small matrix
      products that two intra-op threads share poorly; two groups side by side keep both cores busy.
    - ``"processes"``: each group in one of ``workers`` spawned worker processes holding a copy of
      the network (one core each, no interpreter lock shared); the pool is kept for later calls with
      the same model and weights. Starting it costs a few seconds, so it pays on long runs of many
      groups (CPU only; with ``init`` the groups run in threads). As with any spawned pool, a
      script that uses it needs the ``if __name__ == "__main__":`` guard.

    ``compile_network=True`` runs the network through ``torch.compile`` (:func:`compiled`; needs a C++
    compiler): about 10 s of compilation per process, then faster evaluations (docs/BENCHMARKS.md §9).
    With more than one group at once it needs ``parallel="processes"``.

    ``init(sched, batch, generator) -> (k, x, types)`` starts each group from that state instead of
    the prior (partial-noise refinement of template crystals, :mod:`diffcsp_pp.sample.refine`).

    ``precision="bf16"`` runs the network under bfloat16 autocast (faster on CPUs with AVX512-BF16;
    the sampler state and symmetry operations stay fp32/fp64; see docs/BENCHMARKS.md for its match rate).

    ``fourier_plan=False`` recomputes every Fourier product at every evaluation (for benchmarks;
    the default precomputes the ones the Wyckoff operations fix, same results up to rounding).

    Returns:
        list of length ``len(templates) * n`` (template-major): pymatgen Structures in the
        conventional cell, lattice in pymatgen's standard orientation.
    """
    from pymatgen.core import Lattice, Structure
    from tqdm import tqdm

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if parallel not in PARALLEL:
        raise ValueError(f"parallel must be one of {', '.join(PARALLEL)}, got {parallel!r}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not templates:
        raise ValueError("no templates to sample")
    device = next(model.parameters()).device
    sched = Schedules(diffusion_config).to(device)
    expanded = [t for t in templates for _ in range(n)]
    dataset = CrystalDataset(expanded)
    groups = _chunks(dataset.num_atoms, max_edges, group_size)
    out: list = [None] * len(expanded)
    network_dtype = PRECISIONS[precision]
    threads = torch.get_num_threads()
    requested = threads if workers is None else int(workers)
    workers = min(requested, len(groups)) if device.type == "cpu" else 1
    use_processes = parallel == "processes" and device.type == "cpu" and init is None
    if compile_network and workers > 1 and not use_processes:
        raise ValueError("compile_network with several groups at once needs parallel='processes' without init "
                         "(or workers=1)")

    def gen_seed(g_idx: int) -> int:
        # torch seeds are 64-bit (a negative one is taken mod 2**64 already): the same streams for
        # every seed that fits, and no overflow for the large seeds of retry rounds or timestamps
        return (int(seed) * 1_000_003 + g_idx) % 2**64

    def store(g_idx: int, result) -> None:
        lattices, x, types, batch_idx = result
        for b, idx in enumerate(groups[g_idx]):
            m = batch_idx == b
            out[idx] = Structure(Lattice(lattices[b]), [_symbol(z) for z in types[m]], x[m])

    net = compiled(model) if compile_network and not use_processes else model

    def run(g_idx: int) -> None:
        batch = dataset.collate(groups[g_idx]).to(device)
        store(g_idx, _sample_group(net, sched, batch, gen_seed(g_idx), step_lr, timesteps, init, network_dtype,
                                   fourier_plan, compile_network))

    bar = tqdm(total=len(groups), desc="sample", unit="batch", disable=not progress)
    if use_processes:
        from concurrent.futures import BrokenExecutor, as_completed

        # sized by the request, not by this call's groups: a later call with fewer groups (a retry
        # round, the last chunk of a CSV) reuses the pool instead of starting and compiling anew
        pool = _process_pool(getattr(model, "_orig_mod", model), requested, compile_network)
        futures = {pool.submit(_worker_group, [expanded[i] for i in group], diffusion_config, gen_seed(g_idx),
                               step_lr, timesteps, network_dtype, fourier_plan, compile_network): g_idx
                   for g_idx, group in enumerate(groups)}
        try:
            for future in as_completed(futures):
                store(futures[future], future.result())
                bar.update()
        except BaseException as err:
            for future in futures:
                future.cancel()
            # interrupted, or the pool broke: stop the workers now (groups already queued to them
            # would otherwise run to the end, and a broken pool cannot be reused); an error of one
            # group (bad input) leaves the pool for later calls
            if isinstance(err, (KeyboardInterrupt, SystemExit, BrokenExecutor)):
                _shutdown_pool(kill=True)
            raise
    elif workers <= 1:
        # a few small crystals make products too small to share between threads: with other work on
        # the cores, OpenMP threads then spin (measured: 5 atoms, 2 busy cores, 30x slower)
        small = device.type == "cpu" and int((dataset.num_atoms.astype(np.int64) ** 2).sum()) < SMALL_EDGES
        if small:
            torch.set_num_threads(1)
        try:
            for g_idx in range(len(groups)):
                run(g_idx)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        from concurrent.futures import ThreadPoolExecutor

        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(run, range(len(groups))):
                    bar.update()
        finally:
            torch.set_num_threads(threads)
    bar.close()
    return out


#: spglib tolerance (Å) of the output check (sampled crystals are exact to float precision).
CHECK_SYMPREC = 1e-3
#: Extra sampling rounds for outputs whose spglib group is not their template's.
RETRIES = 3


def keep_group(draw, space_groups: Sequence[int], seed: int, retries: int = RETRIES) -> list:
    """Outputs of ``draw`` that have their requested space group, resampling the others.

    The sampler keeps every template's symmetry operations exactly, but a crystal can come out with
    *more* symmetry than asked, and spglib then reports a supergroup: a lattice on a special metric
    (a = b in Cmmm is tetragonal; measured once in 100 MP-20 predictions at 50 steps), free
    coordinates on special values, or, ab initio, generated types that merge two orbits into one
    lattice (Pt on 4a and 4b of Fm-3m is simple cubic Pt, Pm-3m). Such outputs are drawn again with a
    fresh random stream, up to ``retries`` more rounds, the others are kept as they are.

    Args:
        draw: ``draw(indices, seed) -> list of Structures``, one per index (in that order).
        space_groups: the requested group of every output.
        seed: the first round's seed; later rounds derive theirs from it.

    Returns:
        One Structure per requested group, with ``properties["detected_space_group"]`` (spglib at
        CHECK_SYMPREC) and ``properties["attempts"]`` (draws taken). An output still off after the
        last round is returned as is: its ``detected_space_group`` shows it, and callers report the rate.
    """
    from ..symmetry.analyze import detect_space_group

    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    out: list = [None] * len(space_groups)
    todo = list(range(len(space_groups)))
    for attempt in range(1, retries + 2):
        round_seed = seed if attempt == 1 else (seed * 7919 + 104_729 * attempt) % 2**63
        structures = draw(todo, round_seed)
        if len(structures) != len(todo):
            raise ValueError(f"draw returned {len(structures)} structures for {len(todo)} indices")
        for i, s in zip(todo, structures):
            s.properties.update({"detected_space_group": detect_space_group(s, CHECK_SYMPREC), "attempts": attempt})
            out[i] = s
        todo = [i for i in todo if out[i].properties["detected_space_group"] != space_groups[i]]
        if not todo:
            break
    return out
