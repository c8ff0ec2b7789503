"""Energies and stability of generated crystals (not in the paper): CHGNet single-point energies per
atom (the ``wdist_energy`` column and the hull), and the energy above the convex hull of the
training set's CHGNet energies (``e_above_hull``, stable / metastable / S.U.N. rates)."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .crystals import CACHE_VERSION, parse_crystal, read_cache, save_npz

#: e_above_hull (eV/atom) at most which a crystal counts as stable / metastable.
STABLE_TOL, METASTABLE_EHULL = 1e-6, 0.1


def energy_model_name() -> str:
    import chgnet

    return f"CHGNet {chgnet.__version__} (model 0.3.0): predicted total energy per atom, eV/atom"


@lru_cache(maxsize=1)
def _chgnet():
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet

        return CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)


def chgnet_energies(structures: Sequence, batch_size: int = 32, progress: bool = True, desc: str = "energy") -> np.ndarray:
    """CHGNet (pretrained 0.3.0) predicted total energy per atom (eV/atom); NaN where it fails."""
    from tqdm import tqdm

    model = _chgnet()
    out = np.full(len(structures), np.nan)
    bar = tqdm(total=len(structures), desc=desc, unit="crystal", disable=not progress, file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, len(structures), batch_size):
            batch = list(structures[start:start + batch_size])
            try:
                preds = model.predict_structure(batch, task="e", batch_size=batch_size)
                out[start:start + len(batch)] = [float(p["e"]) for p in preds]
            except Exception:  # noqa: BLE001 - one bad crystal (e.g. isolated atoms): go one by one
                for k, s in enumerate(batch):
                    with contextlib.suppress(Exception):  # stays NaN
                        out[start + k] = float(model.predict_structure(s, task="e")["e"])
            bar.update(len(batch))
    bar.close()
    return out


def set_energies(sources: list, source, cache_dir, want: np.ndarray, progress: bool, desc: str) -> np.ndarray:
    """CHGNet energies per atom of the crystals ``want`` (indices) of a set; NaN elsewhere.

    With a cache (a file set and ``cache_dir``) the computed values are kept in
    ``energy-chgnet030-<hash>.npz`` with a mask of what was computed, so a later call computes only
    what is missing (e.g. a larger training subset for the hull).
    """
    n = len(sources)
    values, done = np.full(n, np.nan), np.zeros(n, dtype=bool)
    path = None
    if cache_dir is not None and isinstance(source, (str, os.PathLike)):
        from ..data.sources import content_hash

        path = Path(cache_dir) / f"energy-chgnet030-{content_hash(source)[:32]}-v{CACHE_VERSION}.npz"
        cached = read_cache(path, n)
        if cached is not None and "energy" in cached and "done" in cached:
            values, done = cached["energy"].astype(float), cached["done"].astype(bool)
    todo = np.asarray([i for i in np.asarray(want, dtype=np.int64) if not done[i]], dtype=np.int64)
    if len(todo):
        structures = [parse_crystal(sources[i]) for i in todo]
        ok = np.array([s is not None for s in structures], dtype=bool)
        if ok.any():
            values[todo[ok]] = chgnet_energies([s for s in structures if s is not None], progress=progress, desc=desc)
        done[todo] = True
        if path is not None:
            save_npz(path, parsed=done, energy=values, done=done)
    out = np.full(n, np.nan)
    out[want] = values[want]
    return out


def hull_energies(gen_compositions: Sequence, gen_energies: np.ndarray, train_compositions: Sequence,
                  train_energies: np.ndarray) -> np.ndarray:
    """Energy per atom above the convex hull of training entries, for each generated crystal.

    Args:
        gen_compositions / train_compositions: pymatgen Compositions (None: skipped).
        gen_energies / train_energies: energies per atom (eV/atom; NaN: skipped).

    Returns:
        e_above_hull per generated crystal (eV/atom, negative below the hull); NaN without an energy
        or when the training entries of its chemical system lack an element's elemental reference.
        One PhaseDiagram per chemical system, from the training entries whose elements are a subset.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    train: dict[frozenset, list] = defaultdict(list)  # chemical system -> its training entries
    for c, e in zip(train_compositions, train_energies, strict=True):
        if c is not None and np.isfinite(e):
            train[frozenset(el.symbol for el in c.elements)].append(PDEntry(c, float(e) * c.num_atoms))
    out = np.full(len(gen_compositions), np.nan)
    by_system: dict[frozenset, list[int]] = defaultdict(list)
    for i, (c, e) in enumerate(zip(gen_compositions, gen_energies, strict=True)):
        if c is not None and np.isfinite(e):
            by_system[frozenset(el.symbol for el in c.elements)].append(i)
    for system, ids in by_system.items():
        if any(not train.get(frozenset([el])) for el in system):
            continue  # an element without an elemental training crystal: no hull
        members = sorted(system)
        entries = [entry for r in range(1, len(members) + 1) for sub in itertools.combinations(members, r)
                   for entry in train.get(frozenset(sub), ())]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd_ = PhaseDiagram(entries)
            for i in ids:
                c = gen_compositions[i]
                entry = PDEntry(c, float(gen_energies[i]) * c.num_atoms)
                out[i] = pd_.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)[1]
    return out
