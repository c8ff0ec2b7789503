"""The bounded-resource policy: named limits every job checks before it starts any work.

A user's input must not be able to exhaust the machine: ``--workers 10000`` would fork ten thousand
processes, a formula such as ``C5000`` in Fd-3m (a 5,000-atom cell) would ask for tens of GB for
its fully connected graph, ``-n 10**9`` would allocate a billion outputs. Each such quantity has a
named limit here, checked with :func:`check` before any model is loaded or any process started;
a value above its limit raises ``ValueError`` naming the value, the limit and how to raise it.

| limit | default | bounds |
|---|---|---|
| ``atoms_per_cell`` | 500 | atoms of one conventional cell (formula, Wyckoff assignment, generated pattern, dataset row) |
| ``structures`` | 100,000 | structures one call makes (``-n``, ``--top-k``) |
| ``workers`` | 64 | worker processes or threads (``--workers``, ``SamplerConfig.workers``) |
| ``batch_size`` | 4,096 | crystals per sampler batch (``--batch-size``) |
| ``formula_chars`` | 256 | characters of a formula string |

The command line raises a limit with ``--raise-limit NAME=VALUE`` (repeatable); the library with
``with raised_limits(atoms_per_cell=2000): ...`` or :func:`set_limits`. Limits are process-wide
(one policy for the whole package); worker processes never check them (their parent did).
The sampler's number of steps is bounded by the model itself (at most its T - 1 steps,
:func:`check_steps`), not by a limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """The named limits (see the module docstring)."""

    atoms_per_cell: int = 500
    structures: int = 100_000
    workers: int = 64
    batch_size: int = 4096
    formula_chars: int = 256

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {f.name} must be a positive integer, got {value!r}")

    def raised(self, specs: list[str] | tuple[str, ...]) -> Limits:
        """These limits with ``NAME=VALUE`` texts applied (the ``--raise-limit`` flag)."""
        changes = {}
        for spec in specs:
            name, sep, text = str(spec).partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in LIMIT_NAMES:
                raise ValueError(f"--raise-limit expects NAME=VALUE with NAME one of {', '.join(LIMIT_NAMES)}, "
                                 f"got {spec!r}")
            try:
                changes[name] = int(text)
            except ValueError:
                raise ValueError(f"--raise-limit {name} needs an integer, got {text!r}") from None
        return dataclasses.replace(self, **changes)


LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(Limits))
_active = [Limits()]


def limits() -> Limits:
    """The limits in force."""
    return _active[-1]


def set_limits(new: Limits) -> Limits:
    """Put ``new`` in force for the rest of the process; returns the previous limits."""
    if not isinstance(new, Limits):
        raise ValueError(f"expected a Limits object, got {new!r}")
    old, _active[-1] = _active[-1], new
    return old


@contextlib.contextmanager
def raised_limits(**changes: int) -> Iterator[Limits]:
    """Limits changed for the block: ``with raised_limits(atoms_per_cell=2000): ...``."""
    unknown = set(changes) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"unknown limit(s) {', '.join(sorted(unknown))}; limits are {', '.join(LIMIT_NAMES)}")
    _active.append(dataclasses.replace(limits(), **changes))
    try:
        yield _active[-1]
    finally:
        _active.pop()


def check(name: str, value: int, what: str) -> int:
    """``value`` if it is within limit ``name``; ValueError naming ``what``, the limit and the flag otherwise."""
    bound = getattr(limits(), name)
    if value > bound:
        raise ValueError(f"{what} = {value} is above the limit {name} = {bound} (bounded resources; raise it with "
                         f"--raise-limit {name}={value} or diffcsp_pp.policy.raised_limits({name}={value}))")
    return value


def check_steps(steps: int | None, timesteps: int) -> int | None:
    """Sampler ``steps`` of a model with ``timesteps`` T: at most T - 1 (the distinct steps there are);
    ValueError above (never silently clamped, so what a run records is what it ran)."""
    if steps is not None and steps > timesteps - 1:
        raise ValueError(f"steps = {steps} is more than this model's diffusion has (T - 1 = {timesteps - 1}); "
                         f"use --steps {timesteps - 1} or fewer")
    return steps


def check_finite(value, name: str) -> float:
    """``value`` as a float if it is a finite real number (not bool); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_output_folder(path, flag: str = "--out") -> Path:
    """An output folder checked before any work: not empty, not an existing file, and under a
    folder this process may write to (nothing is created here). ValueError / PermissionError
    naming the path otherwise."""
    text = "" if path is None else os.fspath(path)
    if not str(text).strip():
        raise ValueError(f"{flag} must name a folder, got an empty string")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder} exists and is not a folder")
    ancestor = folder.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {folder} cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {folder}: {ancestor} is not writable")
    return folder


def check_output_file(path, flag: str = "--out") -> Path:
    """An output file checked before any work: not empty, not a folder, in a writable folder."""
    text = "" if path is None else os.fspath(path)
    if not str(text).strip():
        raise ValueError(f"{flag} must name a file, got an empty string")
    target = Path(text)
    if target.is_dir():
        raise ValueError(f"{flag} {target} is a folder; give a file name such as metrics.json")
    check_output_folder(target.absolute().parent, flag)
    return target
