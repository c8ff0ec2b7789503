"""The sampling engine: templates -> groups -> runner -> pymatgen Structures, and the group check.

Every sampling caller (the API, the CLI, the scripts) goes through :class:`Engine` (usually via the
jobs of :mod:`diffcsp_pp.jobs`). The engine holds a network, its diffusion settings and a frozen
:class:`~diffcsp_pp.sample.config.SamplerConfig` whose model defaults were filled in from the model
folder; it cuts the crystals into groups (:func:`groups_of`), each with its own random stream seeded
by the seed and the group's index, and hands them to a runner
(:mod:`diffcsp_pp.sample.runner`). :meth:`Engine.draw` and :meth:`Engine.refine` add the one
check every output passes (:func:`keep_group`): an output whose spglib group is not its template's is
drawn again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import PRECISIONS, SamplerConfig
from .runner import GroupJob, Runner, runner_for

#: Network precision name -> autocast dtype (None: the state's own dtype).
NETWORK_DTYPES = {"fp32": None, "bf16": torch.bfloat16}
assert set(NETWORK_DTYPES) == set(PRECISIONS)

#: spglib tolerance (Å) of the output check (sampled crystals are exact to float precision).
CHECK_SYMPREC = 1e-3


def groups_of(sizes: np.ndarray, max_edges: int, max_crystals: int = 2**31) -> list[list[int]]:
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


def group_seed(seed: int, index: int) -> int:
    """The random stream of group ``index`` of a call with ``seed``. torch seeds are 64-bit (a
    negative one is taken mod 2**64 already): the same streams for every seed that fits, and no
    overflow for the large seeds of retry rounds or timestamps."""
    return (int(seed) * 1_000_003 + index) % 2**64


def check_templates(templates: Sequence, task: str) -> None:
    """ValueError, before any sampling, for a template the network cannot take: a cell above the
    ``atoms_per_cell`` limit (:mod:`diffcsp_pp.policy`; the graph is fully connected, so memory grows
    as n²) or, with given types (CSP), an element beyond the embedded ones (Z > NUM_ELEMENTS)."""
    from .. import policy
    from ..symmetry.constants import NUM_ELEMENTS

    sizes = np.array([t.num_atoms for t in templates])
    big = int(sizes.argmax())
    policy.check("atoms_per_cell", int(sizes[big]), f"atoms of template {big} ({templates[big].space_group})")
    if task == "csp":
        top = max(int(np.max(t.atom_types)) for t in templates)
        if top > NUM_ELEMENTS:
            raise ValueError(f"element Z = {top} is beyond the elements the model knows (Z <= {NUM_ELEMENTS})")


@dataclass(frozen=True)
class Drawn:
    """One output of :func:`keep_group`: the structure, its spglib group at CHECK_SYMPREC, and how
    many draws it took."""

    structure: object
    detected_space_group: int
    attempts: int


def keep_group(draw: Callable[[list[int], int], list], space_groups: Sequence[int], seed: int,
               retries: int = 3) -> list[Drawn]:
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
        One :class:`Drawn` per requested group. An output still off after the last round is
        returned as is: its ``detected_space_group`` shows it, and callers report the rate.
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
            out[i] = Drawn(s, detect_space_group(s, CHECK_SYMPREC), attempt)
        todo = [i for i in todo if out[i].detected_space_group != space_groups[i]]
        if not todo:
            break
    return out


class Engine:
    """A network, its diffusion settings and a resolved SamplerConfig (see the module docstring).

    Args:
        model: the CSPNet (eval mode).
        run_config: its RunConfig (diffusion settings, task and the sampler defaults).
        sampler: how to sample; its model defaults (``step_lr=None``) are filled from ``run_config``.
        runner: where the groups run (default: the one ``sampler`` asks for, per call).
    """

    def __init__(self, model, run_config, sampler: SamplerConfig | None = None, runner: Runner | None = None):
        self.model, self.run_config = model, run_config
        self.config = (sampler or SamplerConfig()).resolve(run_config)
        from .. import policy

        policy.check_steps(self.config.steps, run_config.diffusion.timesteps)
        self.runner = runner

    @classmethod
    def load(cls, folder, sampler: SamplerConfig | None = None, device: str = "cpu") -> Engine:
        """The engine of a model folder (:class:`~diffcsp_pp.folder.ModelFolder`)."""
        model, cfg = folder.load(device)
        return cls(model, cfg, sampler)

    def with_config(self, sampler: SamplerConfig | None) -> Engine:
        """The same network with another SamplerConfig (None: this one)."""
        return self if sampler is None else Engine(self.model, self.run_config, sampler, self.runner)

    @property
    def task(self) -> str:
        return self.run_config.task

    @property
    def timesteps(self) -> list[int] | None:
        """The full sampler's time steps (None: T-1, ..., 1)."""
        from ..diffusion.process import respaced_timesteps

        return respaced_timesteps(self.run_config.diffusion.timesteps, self.config.steps)

    # ------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, templates: Sequence, seed: int, n: int = 1, timesteps: Sequence[int] | None = None,
               init=None) -> list:
        """``n`` structures per template (template-major), without the group check.

        The templates are sampled in groups of at most ``group_size`` crystals (and ``max_edges``
        Σ n²), each with its own random stream (:func:`group_seed`), so the output depends on the
        seed and the grouping only, not on the runner. ``timesteps`` overrides the configured steps;
        ``init(sched, batch, generator) -> (k, x, types)`` (picklable) starts each group from that
        state instead of the prior (partial-noise refinement, :mod:`diffcsp_pp.sample.refine`).

        Returns:
            pymatgen Structures in the conventional cell, lattice in pymatgen's standard orientation.
        """
        from pymatgen.core import Lattice, Structure
        from tqdm import tqdm

        from ..symmetry.templates import _symbol

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not templates:
            raise ValueError("no templates to sample")
        check_templates(templates, self.task)
        cfg = self.config
        steps = self.timesteps if timesteps is None else list(timesteps)
        expanded = [t for t in templates for _ in range(n)]
        sizes = np.array([t.num_atoms for t in expanded])
        groups = groups_of(sizes, cfg.max_edges, cfg.group_size)
        jobs = [GroupJob(tuple(expanded[i] for i in group), self.run_config.diffusion, group_seed(seed, g),
                         float(cfg.step_lr), None if steps is None else tuple(steps), NETWORK_DTYPES[cfg.precision],
                         cfg.fourier_plan, init, self.task) for g, group in enumerate(groups)]
        device = next(self.model.parameters()).device
        runner = self.runner or runner_for(cfg.parallel, cfg.workers, cfg.compile, device, len(groups))
        out: list = [None] * len(expanded)
        with tqdm(total=len(groups), desc="sample", unit="batch", disable=not cfg.progress) as bar:
            for g, (lattices, x, types, batch_idx) in runner.map(self.model, jobs):
                for b, idx in enumerate(groups[g]):
                    m = batch_idx == b
                    out[idx] = Structure(Lattice(lattices[b]), [_symbol(z) for z in types[m]], x[m])
                bar.update()
        return out

    def draw(self, templates: Sequence, seed: int) -> list[Drawn]:
        """One structure per template with its requested space group (:func:`keep_group`)."""
        return keep_group(lambda idx, sd: self.sample([templates[i] for i in idx], sd),
                          [t.space_group for t in templates], seed, self.config.retries)

    def refine(self, infos: Sequence, seed: int, diff_ratio: float) -> list[Drawn]:
        """Each template crystal (a SymmetryInfo with its lattice and coordinates) noised to
        t₀ = T · ``diff_ratio`` and denoised from there (:mod:`diffcsp_pp.sample.refine`), with the
        group check."""
        from .refine import PartialNoise, refine_timesteps, start_step

        if self.task != "csp":
            raise ValueError("refinement needs a CSP model (atom types are given)")
        steps = refine_timesteps(start_step(self.run_config.diffusion.timesteps, diff_ratio), self.config.steps)
        init = PartialNoise(steps[0])
        return keep_group(lambda idx, sd: self.sample([infos[i] for i in idx], sd, timesteps=steps, init=init),
                          [i.space_group for i in infos], seed, self.config.retries)
