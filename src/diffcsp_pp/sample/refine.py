"""Partial-noise refinement of a template structure (METHOD §4.6 "Partial-noise refinement").

Used by prediction from the formula alone: a retrieved training crystal, its elements substituted,
is noised to an intermediate time t₀ = round(T · diff_ratio) (default diff_ratio 0.1, t₀ = 100,
200 network evaluations) and denoised from there with the ordinary predictor-corrector sampler
over t₀, t₀-1, ..., 1.

Start state (our choice: consistent with training, i.e. with :func:`~diffcsp_pp.diffusion.process.noise_batch`):

- ``k = P_g(√ᾱ_{t₀} k_tpl + √(1-ᾱ_{t₀}) ε_k)`` with ``ε_k = P_g(N(0, I₆))``;
- ``x = E(x_tpl + σ_{t₀} ε̃)`` (E wraps mod 1) with ``ε̃_i = R_i R_{a(i)}⁺ ε_{a(i)}``, the
  Wyckoff-projected noise of training.

The official code (``diff_ratio < 1`` branch) deviates twice, and we fix both:

1. its anchor noise is projected with ``R_a`` instead of ``R_a⁺``. For a non-orthogonal
   idempotent ``R_a`` (e.g. ``x,x,0`` or ``x,2x,z``) that is not the orthogonal projection the
   network was trained on: the free parameters get a different, setting-dependent variance;
2. its lattice noise is not projected with the family projection before the first step, so the
   first network input can lie off the family subspace (k entries that the family fixes are
   noised, e.g. a "cubic" cell with unequal axes) - a state never seen in training.

Both fixes keep the initial state on the training distribution's support: k on the family subspace,
every orbit exactly regenerated from its anchor (tested in ``tests/sample/test_refine.py``). The
template's own lattice and coordinates are the only things that distinguish this from full
sampling: :meth:`~diffcsp_pp.sample.engine.Engine.refine` runs the same sampler from
:class:`PartialNoise` instead of the prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..diffusion.process import Schedules, noise_k
from ..symmetry.families import project_k
from ..symmetry.wyckoff import expand_orbits, project_noise
from ..train.config import DIFF_RATIO

#: Fraction of the T steps refinement starts from (METHOD §7.2 item 5; the model's default is in its config).
DEFAULT_DIFF_RATIO = DIFF_RATIO


def start_step(timesteps: int, diff_ratio: float) -> int:
    """t₀ = round(T · diff_ratio), in 1..T-1."""
    if not 0 < diff_ratio < 1:
        raise ValueError(f"diff_ratio must be in (0, 1), got {diff_ratio}")
    return min(max(int(round(timesteps * diff_ratio)), 1), timesteps - 1)


def refine_timesteps(t0: int, steps: int | None = None) -> list[int]:
    """t₀, t₀-1, ..., 1 (or ``steps`` evenly spaced decreasing steps from t₀ to 1)."""
    if steps is None or steps >= t0:
        return list(range(t0, 0, -1))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return sorted({int(round(v)) for v in np.linspace(1, t0, steps)}, reverse=True)


def _randn(shape, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float64).to(like.device, like.dtype)


def partial_noise_init(sched: Schedules, batch, t0: int, generator: torch.Generator):
    """(k, x, atom types) at time t₀ from the batch's clean k and coordinates (see the module docstring)."""
    dtype = batch.frac_coords.dtype
    sg = batch.space_group
    ab = sched.alpha_bars[t0].to(dtype)
    eps_k = project_k(_randn((batch.num_graphs, 6), batch.k, generator), sg)
    k = noise_k(batch.k, ab, eps_k, sg)  # the forward noising of training
    sigma = sched.sigmas[t0].to(dtype)
    eps = project_noise(_randn(batch.frac_coords.shape, batch.frac_coords, generator), batch.wyckoff_ops,
                        batch.anchor_idx, batch.rot_pinv)
    x = expand_orbits(batch.frac_coords + sigma * eps, batch.wyckoff_ops, batch.anchor_idx)
    return k, x, batch.atom_types


@dataclass(frozen=True)
class PartialNoise:
    """The sampler's start state for refinement from t₀ (picklable, so worker processes can run it)."""

    t0: int

    def __call__(self, sched: Schedules, batch, generator: torch.Generator):
        return partial_noise_init(sched, batch, self.t0, generator)


def refine_structures(model, diffusion_config, infos: Sequence, seed: int, step_lr: float,
                      diff_ratio: float = DEFAULT_DIFF_RATIO, steps: int | None = None, n: int = 1,
                      max_edges: int = 200_000, progress: bool = False, precision: str = "fp32"):
    """Refine ``n`` times each template crystal (a SymmetryInfo: space group, ops, species, k,
    coordinates), without the group check: list of ``len(infos) * n`` Structures (template-major).

    Kept for scripts written against it; the engine's :meth:`~diffcsp_pp.sample.engine.Engine.refine`
    is the one implementation (this runs it without retries).
    """
    from .config import SamplerConfig
    from .engine import Engine
    from .generate import _run_config_of

    if not infos:
        raise ValueError("no templates to refine")
    if model.config.task != "csp":
        raise ValueError("refinement needs a CSP model (atom types are given)")
    timesteps = refine_timesteps(start_step(diffusion_config.timesteps, diff_ratio), steps)
    engine = Engine(model, _run_config_of(model, diffusion_config),
                    SamplerConfig(step_lr=step_lr, precision=precision, max_edges=max_edges, progress=progress))
    return engine.sample(infos, seed, n=n, timesteps=timesteps, init=PartialNoise(timesteps[0]))
