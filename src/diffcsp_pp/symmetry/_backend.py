"""Tiny numpy/torch dispatch so that each formula is written once for both backends.

The symmetry math takes either numpy arrays or torch tensors and returns the same kind. Only the
operations that differ between the two libraries are wrapped here; torch is imported lazily so that
numpy-only users (preprocessing workers, the ``symmetry`` CLI) do not pay for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True if ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def xp(x: Any):
    """The array module of ``x``: ``torch`` for tensors, ``numpy`` otherwise."""
    if is_torch(x):
        import torch

        return torch
    return np


def const_like(value: np.ndarray, like: Any):
    """A numpy constant converted to the backend, dtype and device of ``like``."""
    if is_torch(like):
        import torch

        return torch.from_numpy(np.array(value)).to(dtype=like.dtype, device=like.device)
    dtype = like.dtype if np.asarray(like).dtype.kind == "f" else np.float64
    return np.asarray(value, dtype=dtype)


def index_like(index: Any, like: Any):
    """An integer index array on the backend (and device) of ``like``."""
    if is_torch(like):
        import torch

        return torch.as_tensor(index, dtype=torch.long, device=like.device)
    return np.asarray(index, dtype=np.int64)


def swap_last(x: Any):
    """Transpose the last two axes."""
    return x.swapaxes(-1, -2) if not is_torch(x) else x.transpose(-1, -2)


def segment_sum(values: Any, index: Any, num_segments: int):
    """Sum rows of ``values`` [N, ...] into ``num_segments`` bins given by ``index`` [N]."""
    if is_torch(values):
        import torch

        out = torch.zeros((num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, index, values)
    out = np.zeros((num_segments, *values.shape[1:]), dtype=values.dtype)
    np.add.at(out, index, values)
    return out


def ones_like_rows(index: Any, like: Any):
    """A float vector of ones with one entry per element of ``index``, on ``like``'s backend."""
    if is_torch(like):
        import torch

        return torch.ones(index.shape[0], dtype=like.dtype, device=like.device)
    return np.ones(index.shape[0], dtype=like.dtype)
