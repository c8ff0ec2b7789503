"""The network's fixed feature maps (METHOD §5): the sinusoidal time embedding and the Fourier
features ψ of fractional-coordinate differences. Pure functions, used by the reference layer
(:mod:`diffcsp_pp.model.cspnet`) and the fast paths (:mod:`diffcsp_pp.model.fast`)."""

from __future__ import annotations

import math

import torch


def sinusoidal_time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B, dim] embedding of integer steps t [B]: [sin(t f_j), cos(t f_j)], f_j = 10⁻⁴^(j/(dim/2-1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


def fourier_args(values: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """``2π f v`` for f = 0..F-1: [..., F] from values [...]."""
    freqs = 2.0 * math.pi * torch.arange(num_freqs, device=values.device, dtype=values.dtype)
    return values[..., None] * freqs


def fourier_features(diff: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """ψ(d): [E, 6F] features ``[sin(2π f d), cos(2π f d)]`` for f = 0..F-1 of each component of
    d [E, 3], component-major within each half (column c·F + f)."""
    arg = fourier_args(diff, num_freqs).reshape(diff.shape[0], 3 * num_freqs)  # [E, 3F], component-major (E may be 0)
    return torch.cat([arg.sin(), arg.cos()], dim=-1)
