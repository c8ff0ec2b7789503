"""The lattice as the 6-vector k (METHOD §2) and lattice parameters <-> matrices (METHOD §1.5).

Convention: lattice matrices are row-vector matrices ``L = [a; b; c]`` (pymatgen), in Å. The Gram
matrix is ``G = L Lᵀ``. The symmetric "log-lattice" is ``S = ½ log G`` and

    k_i = <S, B̂_i>_F,   S = Σ_i k_i B̂_i,

with ``B̂_i`` the Frobenius-normalised basis of METHOD §2.2 (the official code's basis, so the
hexagonal bias is ``-√2·ln3/4``). ``S`` depends only on the six lattice parameters, so k is
invariant to rotations of the lattice. Matrix logarithm and exponential use ``eigh`` on symmetric
matrices only (never a general eigendecomposition) and no function mutates its inputs.

All functions accept numpy arrays or torch tensors with any leading batch shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import const_like, is_torch, swap_last, xp

_RAW_BASIS = np.array(
    [
        [[0, 1, 0], [1, 0, 0], [0, 0, 0]],  # B1 = E12 + E21
        [[0, 0, 1], [0, 0, 0], [1, 0, 0]],  # B2 = E13 + E31
        [[0, 0, 0], [0, 0, 1], [0, 1, 0]],  # B3 = E23 + E32
        [[1, 0, 0], [0, -1, 0], [0, 0, 0]],  # B4 = diag(1, -1, 0)
        [[1, 0, 0], [0, 1, 0], [0, 0, -2]],  # B5 = diag(1, 1, -2)
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],  # B6 = I
    ],
    dtype=np.float64,
)
#: [6, 3, 3] orthonormal (Frobenius) basis of symmetric 3x3 matrices.
K_BASIS = _RAW_BASIS / np.sqrt((_RAW_BASIS**2).sum(axis=(1, 2)))[:, None, None]
K_BASIS.setflags(write=False)


#: Relative eigenvalue below which a Gram matrix counts as singular (a flat cell).
_SINGULAR_RTOL = 1e-10


def _sym_fn(mat: Any, fn_name: str):
    """Apply a scalar function to a batch of symmetric matrices through ``eigh``: V f(w) Vᵀ."""
    mod = xp(mat)
    w, v = mod.linalg.eigh(mat)  # [..., 3], [..., 3, 3]
    fw = getattr(mod, fn_name)(w)
    return (v * fw[..., None, :]) @ swap_last(v)


def gram_from_lattice(lattice: Any):
    """Gram matrix ``G = L Lᵀ`` [..., 3, 3] of row-vector lattices [..., 3, 3] (Å²)."""
    return lattice @ swap_last(lattice)


def k_from_gram(gram: Any):
    """k [..., 6] of Gram matrices [..., 3, 3]; raises ValueError on a non positive-definite numpy input."""
    if not is_torch(gram):
        w = np.linalg.eigvalsh(gram)
        if not np.all(np.isfinite(w)) or np.any(w <= _SINGULAR_RTOL * np.max(np.abs(w), axis=-1, keepdims=True)):
            raise ValueError(f"Gram matrix is not positive definite (eigenvalues {np.asarray(w).tolist()})")
    s = 0.5 * _sym_fn(gram, "log")  # [..., 3, 3]
    return xp(gram).einsum("...ij,kij->...k", s, const_like(K_BASIS, gram))


def k_from_lattice(lattice: Any):
    """k [..., 6] of row-vector lattices [..., 3, 3]; invariant to rotating the lattice."""
    return k_from_gram(gram_from_lattice(lattice))


def log_lattice_from_k(k: Any):
    """The symmetric matrix ``S = Σ k_i B̂_i`` [..., 3, 3]."""
    return xp(k).einsum("...k,kij->...ij", k, const_like(K_BASIS, k))


def gram_from_k(k: Any):
    """Gram matrix ``exp(2S)`` [..., 3, 3] of k [..., 6]."""
    return _sym_fn(2.0 * log_lattice_from_k(k), "exp")


def symmetric_lattice_from_k(k: Any):
    """The symmetric lattice matrix ``exp(S)`` [..., 3, 3]: rows are a rotated copy of a, b, c."""
    return _sym_fn(log_lattice_from_k(k), "exp")


def params_from_gram(gram: Any):
    """Lengths [..., 3] (Å) and angles α, β, γ [..., 3] (degrees) from Gram matrices."""
    mod = xp(gram)
    diag = mod.diagonal(gram, 0, -2, -1) if is_torch(gram) else np.diagonal(gram, 0, -2, -1)
    lengths = mod.sqrt(diag)
    a, b, c = lengths[..., 0], lengths[..., 1], lengths[..., 2]
    cos = mod.stack(
        [gram[..., 1, 2] / (b * c), gram[..., 0, 2] / (a * c), gram[..., 0, 1] / (a * b)], -1
    )
    angles = mod.rad2deg(mod.arccos(mod.clip(cos, -1.0, 1.0)))
    return lengths, angles


def lattice_from_params(lengths: Any, angles: Any):
    """Row-vector lattice [..., 3, 3] in pymatgen's ``Lattice.from_parameters`` orientation.

    ``a = (a sinβ, 0, a cosβ)``, ``b = (-b sinα cosγ*, b sinα sinγ*, b cosα)``, ``c = (0, 0, c)``
    with ``cosγ* = (cosα cosβ - cosγ) / (sinα sinβ)`` clamped to [-1, 1] (METHOD §1.5).
    """
    mod = xp(lengths)
    rad = mod.deg2rad(angles)
    cos, sin = mod.cos(rad), mod.sin(rad)
    ca, cb, cg = cos[..., 0], cos[..., 1], cos[..., 2]
    sa, sb = sin[..., 0], sin[..., 1]
    cgs = mod.clip((ca * cb - cg) / (sa * sb), -1.0, 1.0)
    sgs = mod.sqrt(1.0 - cgs**2)
    a, b, c = lengths[..., 0], lengths[..., 1], lengths[..., 2]
    zero = a * 0.0
    va = mod.stack([a * sb, zero, a * cb], -1)
    vb = mod.stack([-b * sa * cgs, b * sa * sgs, b * ca], -1)
    vc = mod.stack([zero, zero, c], -1)
    return mod.stack([va, vb, vc], -2)


def lattice_from_k(k: Any):
    """Row-vector lattice [..., 3, 3] of k [..., 6] in pymatgen's standard orientation (Å)."""
    return lattice_from_params(*params_from_gram(gram_from_k(k)))

