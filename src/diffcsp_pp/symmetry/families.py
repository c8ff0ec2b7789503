"""Crystal families and the k constraints of every space group (METHOD §2.3-2.4).

The family of a space group fixes some entries of k: mask 1 marks a free entry; the bias holds the
value of the fixed ones. The projection ``P_g(k) = m ⊙ k + b`` is idempotent because ``m ⊙ b = 0``.
The constraints hold in the standard setting (c unique for tetragonal/hexagonal, b unique for
monoclinic, hexagonal axes with γ = 120° for rhombohedral groups).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import const_like, index_like, is_torch

#: (last space-group number of the family, family name), in order.
FAMILY_RANGES: tuple[tuple[int, str], ...] = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)

#: k1 of a hexagonal cell (a = b, γ = 120°) on the normalised basis: -√2·ln(3)/4.
HEXAGONAL_K1 = -math.sqrt(2.0) * math.log(3.0) / 4.0

_FAMILY_MASK = {
    "triclinic": (1, 1, 1, 1, 1, 1),
    "monoclinic": (0, 1, 0, 1, 1, 1),
    "orthorhombic": (0, 0, 0, 1, 1, 1),
    "tetragonal": (0, 0, 0, 0, 1, 1),
    "hexagonal": (0, 0, 0, 0, 1, 1),
    "cubic": (0, 0, 0, 0, 0, 1),
}


def check_space_group(space_group: int) -> int:
    """Return ``space_group`` as int, or raise ValueError if it is not an integer in 1-230."""
    if isinstance(space_group, bool):  # True == 1 must not pass as P1
        raise ValueError(f"space group must be an integer 1-230, got {space_group!r}")
    try:
        number = int(space_group)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"space group must be an integer 1-230, got {space_group!r}") from None
    if number != space_group or not 1 <= number <= 230:
        raise ValueError(f"space group must be an integer 1-230, got {space_group!r}")
    return number


def crystal_family(space_group: int) -> str:
    """Crystal family name of a space group number (1-230)."""
    number = check_space_group(space_group)
    for last, name in FAMILY_RANGES:
        if number <= last:
            return name
    raise AssertionError("unreachable")


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((231, 6))
    bias = np.zeros((231, 6))
    for sg in range(1, 231):
        family = crystal_family(sg)
        mask[sg] = _FAMILY_MASK[family]
        if family == "hexagonal":
            bias[sg, 0] = HEXAGONAL_K1
    mask[0] = np.nan  # index 0 is not a space group: using it poisons results visibly
    bias[0] = np.nan
    mask.setflags(write=False)
    bias.setflags(write=False)
    return mask, bias


#: [231, 6] mask and bias tables indexed by space-group number (row 0 is NaN).
K_MASK, K_BIAS = _build_tables()


def k_mask_bias(space_group: Any, like: Any = None):
    """Mask and bias [..., 6] for space-group numbers (int or integer array/tensor [...]).

    Args:
        space_group: space-group numbers 1-230.
        like: array or tensor whose backend/dtype/device the result takes (default: numpy float64).
    """
    like = np.zeros(()) if like is None else like
    if isinstance(space_group, (int, np.integer)):
        check_space_group(int(space_group))
    elif not is_torch(space_group):
        sg = np.asarray(space_group)
        if sg.size and (sg.min() < 1 or sg.max() > 230):
            raise ValueError(f"space groups must be in 1-230, got values {sg.min()}..{sg.max()}")
    idx = index_like(space_group, like)
    return const_like(K_MASK, like)[idx], const_like(K_BIAS, like)[idx]


def project_k(k: Any, space_group: Any):
    """``P_g(k) = m ⊙ k + b`` for k [..., 6] and space groups [...] (or one int)."""
    mask, bias = k_mask_bias(space_group, like=k)
    return mask * k + bias
