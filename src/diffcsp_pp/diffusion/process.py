"""Forward noising, the training loss and the predictor-corrector sampler (METHOD §4).

Everything symmetric goes through the operators of :mod:`diffcsp_pp.symmetry` (``project_k``,
``expand_orbits``, ``project_noise``, ``pull_back``, ``orbit_mean``, ``push_forward``); nothing
here re-derives them. All randomness comes from an explicit ``torch.Generator``.

Choices where the official code deviates from the paper (METHOD §4.6, §9), all kept as in the
official code by default so that results are comparable:

- the sampler starts at t = T - 1 (``time_start``), 2 network evaluations per step;
- corrector step ``γ / (λ(σ_t) σ₁²)`` (DiffCSP++) rather than DiffCSP's ``γ (σ_t/σ₁)²``
  (``corrector="diffcsp"`` selects the latter);
- the predictor feeds the old k_t together with the corrected coordinates;
- the lattice noise is ``P_g(N(0, I))`` (it carries the bias; the projection of the update resets
  the fixed entries anyway, so this changes nothing);
- λ(σ) is computed by quadrature instead of an unseeded Monte Carlo draw (deterministic).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

import torch
from torch import nn

from ..symmetry.constants import NUM_ELEMENTS
from ..symmetry.families import project_k
from ..symmetry.wyckoff import expand_orbits, orbit_mean, project_noise, pull_back, push_forward
from .schedules import DDPMSchedule, geometric_sigmas
from .wrapped_normal import neg_wrapped_normal_score, score_normaliser


@dataclass(frozen=True)
class DiffusionConfig:
    """Processes and loss weights (METHOD §4.2-4.5)."""

    timesteps: int = 1000
    sigma_begin: float = 0.005
    sigma_end: float = 0.5
    cost_lattice: float = 1.0
    cost_coord: float = 1.0
    cost_type: float = 20.0

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=8)
def _schedule_arrays(timesteps: int, sigma_begin: float, sigma_end: float) -> tuple:
    """The schedules as read-only numpy arrays (λ by quadrature takes a second: computed once)."""
    ddpm = DDPMSchedule.cosine(timesteps)
    sigmas = geometric_sigmas(timesteps, sigma_begin, sigma_end)
    arrays = (ddpm.betas, ddpm.alphas, ddpm.alpha_bars, ddpm.posterior_std, sigmas, score_normaliser(sigmas))
    for a in arrays:
        a.setflags(write=False)
    return arrays


class Schedules(nn.Module):
    """Schedule tensors [T + 1] as (deterministic) buffers, so they follow the model's device."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        arrays = _schedule_arrays(config.timesteps, config.sigma_begin, config.sigma_end)
        names = ("betas", "alphas", "alpha_bars", "posterior_std", "sigmas", "lambdas")
        for name, value in zip(names, arrays, strict=True):
            self.register_buffer(name, torch.tensor(np.array(value), dtype=torch.float64), persistent=False)
        self.timesteps = config.timesteps


def respaced_timesteps(timesteps: int, steps: int | None) -> list[int] | None:
    """``steps`` evenly spaced, decreasing time steps in 1..T-1 (None: the full ``T-1, …, 1``)."""
    if steps is None:
        return None
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return sorted({int(round(v)) for v in np.linspace(1, timesteps - 1, steps)}, reverse=True)


@dataclass
class NoisyBatch:
    """A noised batch and its regression targets."""

    t: torch.Tensor  # [B] long
    k_t: torch.Tensor  # [B, 6]
    frac_coords_t: torch.Tensor  # [N, 3]
    atom_input: torch.Tensor  # [N] Z (csp) or [N, 100] noisy one-hot (gen)
    eps_k: torch.Tensor  # [B, 6] target, P_g(N(0, I))
    target_x: torch.Tensor  # [N, 3] target in anchor parameter space
    eps_a: torch.Tensor | None  # [N, 100] target (gen)


def _randn(shape, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float64).to(like.device, like.dtype)


def noise_k(k0: torch.Tensor, alpha_bar: torch.Tensor, eps_k: torch.Tensor, space_group: torch.Tensor) -> torch.Tensor:
    """Forward DDPM noising of the lattice: ``P_g(√ᾱ k₀ + √(1-ᾱ) ε)`` (METHOD §4.2; training and
    the start of refinement)."""
    return project_k(alpha_bar.sqrt() * k0 + (1 - alpha_bar).sqrt() * eps_k, space_group)


def noise_batch(sched: Schedules, batch, generator: torch.Generator, task: str, t: torch.Tensor | None = None,
                num_elements: int = NUM_ELEMENTS) -> NoisyBatch:
    """Sample t per crystal and noise k, the coordinates (Wyckoff-projected) and, for ``gen``, the
    one-hot types over ``num_elements`` element types."""
    B, dtype = batch.num_graphs, batch.frac_coords.dtype
    if t is None:
        t = torch.randint(1, sched.timesteps + 1, (B,), generator=generator, device=generator.device).to(batch.k.device)
    ab = sched.alpha_bars[t].to(dtype)  # [B]
    eps_k = project_k(_randn((B, 6), batch.k, generator), batch.space_group)
    k_t = noise_k(batch.k, ab[:, None], eps_k, batch.space_group)

    sigma = sched.sigmas[t].to(dtype)[batch.batch_idx][:, None]  # [N, 1]
    lam = sched.lambdas[t].to(dtype)[batch.batch_idx][:, None]
    eps = _randn(batch.frac_coords.shape, batch.frac_coords, generator)
    param = pull_back(eps, batch.rot_pinv)[batch.anchor_idx]  # [N, 3]  R_a⁺ ε_a, shared by the orbit
    x_t = (batch.frac_coords + sigma * push_forward(param, batch.wyckoff_ops)) % 1.0
    target_x = neg_wrapped_normal_score(sigma * param, sigma) / lam.sqrt()

    eps_a = None
    atom_input = batch.atom_types
    if task == "gen":
        a0 = torch.nn.functional.one_hot(batch.atom_types - 1, num_elements).to(dtype)
        eps_a = _randn(a0.shape, a0, generator)[batch.anchor_idx]  # types share the anchor's noise
        ab_atom = ab[batch.batch_idx][:, None]
        atom_input = ab_atom.sqrt() * a0 + (1 - ab_atom).sqrt() * eps_a
    return NoisyBatch(t, k_t, x_t, atom_input, eps_k, target_x, eps_a)


def diffusion_loss(model, sched: Schedules, config: DiffusionConfig, batch, generator: torch.Generator,
                   task: str | None = None, num_elements: int = NUM_ELEMENTS) -> dict[str, torch.Tensor]:
    """Training loss (METHOD §4.2-4.5) as a dict with ``loss`` and its terms. ``task``: ``"csp"`` or
    ``"gen"`` (None: the network's)."""
    task = model.config.task if task is None else task
    noisy = noise_batch(sched, batch, generator, task, num_elements=num_elements)
    out = model(batch, noisy.k_t, noisy.frac_coords_t, noisy.t, noisy.atom_input)
    loss_k = ((project_k(out.pred_eps_k, batch.space_group) - noisy.eps_k) ** 2).mean()
    loss_x = ((pull_back(out.pred_score_x, batch.rot_pinv.to(out.pred_score_x.dtype)) - noisy.target_x) ** 2).mean()
    terms = {"loss_k": loss_k, "loss_x": loss_x}
    total = config.cost_lattice * loss_k + config.cost_coord * loss_x
    if task == "gen":
        loss_a = ((out.pred_eps_a - noisy.eps_a) ** 2).mean()
        terms["loss_a"] = loss_a
        total = total + config.cost_type * loss_a
    terms["loss"] = total
    return terms


#: Default box (low, high) for the sampler's lattice estimate k̂₀ (see :func:`sample`): the five shape
#: coefficients within ±3.5 and the isotropic one (k₆ = √3·ln a for a cube of edge a) in [0.5, 8],
#: i.e. a cube edge between 1.3 and 100 Å. The training data of Perov-5 and MP-20 lie within ±2.7
#: (shape) and [1.59, 4.6] (k₆).
K_CLIP = ((-3.5, -3.5, -3.5, -3.5, -3.5, 0.5), (3.5, 3.5, 3.5, 3.5, 3.5, 8.0))


@dataclass
class SampleState:
    """State of the sampler after a sub-step (passed to the callback)."""

    t: int
    stage: str  # "init", "corrector" or "predictor"
    k: torch.Tensor
    frac_coords: torch.Tensor
    atom_input: torch.Tensor


def _symmetric_score(pred_x, batch, lam_t):
    """√λ·net output, pulled back, averaged over each orbit and pushed forward (METHOD §3.2)."""
    s = pull_back(lam_t.sqrt() * pred_x.to(lam_t.dtype), batch.rot_pinv)
    return push_forward(orbit_mean(s, batch.anchor_idx), batch.wyckoff_ops)


# ----------------------------------------------------------- the sampler's steps (METHOD §4.6)
def prior(batch, generator: torch.Generator, task: str, num_elements: int = NUM_ELEMENTS):
    """The start of full sampling: ``x ~ E(U[0,1)^{N×3})``, ``k ~ P_g(N(0, I₆))`` and, ab initio,
    ``a ~ N(0, I)`` over ``num_elements`` types, copied from each orbit's anchor (CSP: the given types)."""
    dtype, ops, anchors = batch.frac_coords.dtype, batch.wyckoff_ops, batch.anchor_idx
    n = batch.frac_coords.shape[0]
    x = expand_orbits(torch.rand((n, 3), generator=generator, device=generator.device, dtype=torch.float64).to(dtype),
                      ops, anchors)
    k = project_k(_randn((batch.num_graphs, 6), batch.k, generator), batch.space_group)
    a = _randn((n, num_elements), batch.frac_coords, generator)[anchors] if task == "gen" else batch.atom_types
    return k, x, a


def wyckoff_noise(batch, like: torch.Tensor, generator: torch.Generator, zero: bool = False) -> torch.Tensor:
    """``z ~ N(0, I)`` projected on the Wyckoff positions (``R_i R_a⁺ z_a``); zero at the last step."""
    if zero:
        return torch.zeros_like(like)
    return project_noise(_randn(like.shape, like, generator), batch.wyckoff_ops, batch.anchor_idx, batch.rot_pinv)


def langevin_x(x, score, eta, z, batch):
    """Corrector: one Langevin step on the coordinates, ``x' = E(x − η ŝ + √(2η) z)``."""
    return expand_orbits(x - eta * score + (2 * eta).sqrt() * z, batch.wyckoff_ops, batch.anchor_idx)


def corrector_step_size(step_lr: float, lam_t, sigma_t, sigma_1, corrector: str):
    """η_t: ``γ / (λ(σ_t) σ₁²)`` (DiffCSP++) or ``γ (σ_t/σ₁)²`` (DiffCSP)."""
    return step_lr / (lam_t * sigma_1**2) if corrector == "diffcsp++" else step_lr * (sigma_t / sigma_1) ** 2


def reverse_ve_x(x, score, sigma_t, sigma_s, z, batch):
    """Predictor for the coordinates (reverse VE, ancestral) from σ_t to σ_s:
    ``E(x − (σ_t² − σ_s²) ŝ + √(σ_s²(σ_t² − σ_s²)/σ_t²) z)``."""
    var_step = sigma_t**2 - sigma_s**2
    return expand_orbits(x - var_step * score + (sigma_s**2 * var_step / sigma_t**2).sqrt() * z, batch.wyckoff_ops,
                         batch.anchor_idx)


def ddpm_k(k, eps_k, ab_t, ab_s, z_k, space_group, clip=None):
    """Predictor for the lattice (DDPM posterior from t to s), projected on the family:
    ``P_g(μ + σ̃ z)`` with ``μ = (k − β/√(1−ᾱ_t) ε̂)/√α`` or, with ``clip = (low, high)``, the
    posterior mean from the clipped estimate k̂₀ (see :func:`sample`)."""
    alpha = ab_t / ab_s  # α_t for consecutive steps; the respaced α otherwise
    beta = 1 - alpha
    post_std = (beta * (1 - ab_s) / (1 - ab_t)).sqrt()
    if clip is None:
        mean_k = (k - beta / (1 - ab_t).sqrt() * eps_k) / alpha.sqrt()
    else:
        k0 = torch.maximum(torch.minimum((k - (1 - ab_t).sqrt() * eps_k) / ab_t.sqrt(), clip[1]), clip[0])
        mean_k = (ab_s.sqrt() * beta * k0 + alpha.sqrt() * (1 - ab_s) * k) / (1 - ab_t)
    return project_k(mean_k + post_std * z_k, space_group)


def ddpm_types(a, eps_a, ab_t, ab_s, z_a, anchors):
    """Predictor for the types (ab initio): the same DDPM update, ε̂ averaged over the orbit, noise
    and result copied from the anchor."""
    alpha = ab_t / ab_s
    beta = 1 - alpha
    post_std = (beta * (1 - ab_s) / (1 - ab_t)).sqrt()
    eps_a = orbit_mean(eps_a, anchors)
    return ((a - beta / (1 - ab_t).sqrt() * eps_a) / alpha.sqrt() + post_std * z_a[anchors])[anchors]


@torch.no_grad()
def sample(
    model,
    sched: Schedules,
    batch,
    generator: torch.Generator,
    step_lr: float,
    timesteps: Sequence[int] | None = None,
    corrector: str = "diffcsp++",
    callback: Callable[[SampleState], None] | None = None,
    init: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    network_dtype: torch.dtype | None = None,
    clip_k: tuple[Sequence[float], Sequence[float]] | None = K_CLIP,
    fourier_plan: bool = True,
    *,
    task: str | None = None,
    num_elements: int = NUM_ELEMENTS,
):
    """Predictor-corrector sampling on a batch of templates (METHOD §4.6).

    For each t (with s the next visited step, 0 after the last): the corrector (one Langevin step on
    x, :func:`langevin_x`), then the predictor on the corrected x and the old k_t: x by
    :func:`reverse_ve_x`, k by :func:`ddpm_k`, ab initio the types by :func:`ddpm_types`. The
    start is :func:`prior`, or ``init`` (refinement starts from a noised template).

    Args:
        batch: CrystalBatch whose symmetry fields (ops, anchors, space groups, sizes, and atom types
            for CSP) define the templates; its coordinates and k are ignored unless ``init`` is given.
        step_lr: Langevin γ.
        timesteps: decreasing time steps to visit (default ``T-1, …, 1`` as in the official code).
            A subsequence gives a respaced sampler: k uses the DDPM posterior between the visited
            steps and x the VE ancestral step between their σs.
        corrector: ``"diffcsp++"`` (γ / (λ σ₁²)) or ``"diffcsp"`` (γ (σ_t/σ₁)²); ``"none"`` skips it.
        init: (k, frac_coords, atom_input) to start from instead of the prior (partial noise).
        clip_k: (low, high) box for the lattice estimate k̂₀ = (k_t − √(1−ᾱ_t) ε̂)/√ᾱ_t: the k update
            is the DDPM posterior mean computed from k̂₀ clipped to the box (Ho et al.'s "clipped x₀";
            default :data:`K_CLIP`). Near t = T, 1/√ᾱ_t ≈ 640, so the first large jumps of a respaced
            sampler (or a poorly trained model) would amplify small errors of ε̂ into cells of
            10¹⁰⁰ Å³ or 10⁻⁶ Å; the box holds every real crystal, so ordinary runs are unchanged.
            ``None`` is the paper's unclipped update (bit for bit).
        network_dtype: ``torch.bfloat16`` runs the network's matrix products under autocast (about
            2.5x faster GEMMs on CPUs with AVX512-BF16); the sampler state, the symmetry projections
            and every update stay in the state's dtype, so symmetry is exact either way.
        fourier_plan: precompute the Fourier products the Wyckoff operations fix
            (:meth:`~diffcsp_pp.model.cspnet.CSPNet.fourier_plan`); the same results up to float
            rounding, faster. False computes every product at every evaluation.
        task: ``"csp"`` (types given) or ``"gen"`` (types diffused over ``num_elements``); None:
            the network's.

    Returns:
        (k [B, 6], frac_coords [N, 3], atom_types [N] long).
    """
    task = model.config.task if task is None else task
    dtype = batch.frac_coords.dtype
    T = sched.timesteps
    steps = list(timesteps) if timesteps is not None else list(range(T - 1, 0, -1))
    if any(b >= a for a, b in zip(steps, steps[1:])) or not steps or steps[-1] < 1 or steps[0] > T:
        raise ValueError(f"timesteps must decrease within 1..{T}, got {steps[:3]}...{steps[-3:]}")
    if corrector not in ("diffcsp++", "diffcsp", "none"):
        raise ValueError(f"unknown corrector {corrector!r}")
    B = batch.num_graphs
    k, x, a = prior(batch, generator, task, num_elements) if init is None else init
    if callback:
        callback(SampleState(steps[0], "init", k, x, a))
    sigma_1 = sched.sigmas[1].to(dtype)
    autocast = network_dtype is not None and network_dtype != dtype
    clip = None if clip_k is None else tuple(torch.as_tensor(v, dtype=dtype, device=x.device) for v in clip_k)

    # the Fourier products that the Wyckoff operations keep fixed, computed once (exact; CSPNet docs)
    plan = model.fourier_plan(batch) if fourier_plan and hasattr(model, "fourier_plan") else None
    extra = {"plan": plan} if plan is not None else {}

    def net(k_, x_, t_, a_):
        if not autocast:
            return model(batch, k_, x_, t_, a_, **extra)
        with torch.autocast(device_type=x.device.type, dtype=network_dtype):
            return model(batch, k_, x_, t_, a_, **extra)

    # under bf16 an outer, disabled autocast context keeps autocast's cache of the cast weights
    # alive across evaluations (it is dropped when the outermost context exits); the sampler's own
    # operations below stay in the state's dtype
    keep_casts = torch.autocast(device_type=x.device.type, enabled=False) if autocast else contextlib.nullcontext()
    with keep_casts:
        for t, s in zip(steps, steps[1:] + [0]):
            t_vec = torch.full((B,), t, dtype=torch.long, device=x.device)
            sigma_t, sigma_s, lam_t = sched.sigmas[t].to(dtype), sched.sigmas[s].to(dtype), sched.lambdas[t].to(dtype)
            ab_t, ab_s = sched.alpha_bars[t].to(dtype), sched.alpha_bars[s].to(dtype)
            last = s == 0
            # (a) corrector: one Langevin step on x
            if corrector != "none":
                score = _symmetric_score(net(k, x, t_vec, a).pred_score_x, batch, lam_t)
                eta = corrector_step_size(step_lr, lam_t, sigma_t, sigma_1, corrector)
                x = langevin_x(x, score, eta, wyckoff_noise(batch, x, generator, zero=last), batch)
                if callback:
                    callback(SampleState(t, "corrector", k, x, a))
            # (b) predictor on the corrected x with the old k_t: x, then k, then (ab initio) types
            out = net(k, x, t_vec, a)
            score = _symmetric_score(out.pred_score_x, batch, lam_t)
            x_new = reverse_ve_x(x, score, sigma_t, sigma_s, wyckoff_noise(batch, x, generator, zero=last), batch)
            z_k = project_k(_randn((B, 6), k, generator), batch.space_group)
            k = ddpm_k(k, out.pred_eps_k.to(dtype), ab_t, ab_s, z_k, batch.space_group, clip)
            if task == "gen":
                a = ddpm_types(a, out.pred_eps_a.to(dtype), ab_t, ab_s, _randn(a.shape, a, generator), batch.anchor_idx)
            x = x_new
            if callback:
                callback(SampleState(s, "predictor", k, x, a))
    types = a.argmax(-1) + 1 if task == "gen" else a
    return k, x, types
