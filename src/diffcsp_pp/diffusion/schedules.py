"""Noise schedules (METHOD §4.1-4.3) as pure functions returning float64 numpy arrays.

Every schedule has ``T + 1`` entries; index 0 is padding (β₀ = 0, ᾱ₀ = 1, σ₀ = 0) so that
``schedule[t]`` is the value at timestep ``t ∈ {1, …, T}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Number of diffusion steps of the paper.
TIMESTEPS = 1000
#: Offset s of the cosine schedule (Nichol & Dhariwal).
COSINE_S = 0.008
#: Geometric σ range of the fractional-coordinate VE process.
SIGMA_BEGIN, SIGMA_END = 0.005, 0.5


def cosine_betas(timesteps: int = TIMESTEPS, s: float = COSINE_S) -> np.ndarray:
    """β_t [T + 1] of the cosine schedule, clipped to [1e-4, 0.9999]; β₀ = 0."""
    t = np.arange(timesteps + 1, dtype=np.float64)
    f = np.cos(((t / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 1e-4, 0.9999)
    return np.concatenate([[0.0], betas])


@dataclass(frozen=True)
class DDPMSchedule:
    """β, α, ᾱ and the posterior std σ̃ [T + 1] of a DDPM (index 0 = padding)."""

    betas: np.ndarray
    alphas: np.ndarray
    alpha_bars: np.ndarray
    posterior_std: np.ndarray

    @classmethod
    def cosine(cls, timesteps: int = TIMESTEPS) -> DDPMSchedule:
        betas = cosine_betas(timesteps)
        alphas = 1.0 - betas
        alpha_bars = np.cumprod(alphas)
        prev = np.concatenate([[1.0], alpha_bars[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            post = np.sqrt(betas * (1.0 - prev) / (1.0 - alpha_bars))
        post[0] = 0.0
        return cls(betas, alphas, alpha_bars, post)

    @property
    def timesteps(self) -> int:
        return len(self.betas) - 1


def geometric_sigmas(
    timesteps: int = TIMESTEPS, sigma_begin: float = SIGMA_BEGIN, sigma_end: float = SIGMA_END
) -> np.ndarray:
    """σ_t [T + 1], geometric from σ₁ = sigma_begin to σ_T = sigma_end; σ₀ = 0."""
    sig = np.exp(np.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps))
    return np.concatenate([[0.0], sig])
