"""Property distributions of generated vs reference crystals (METHOD §7.3): Wasserstein-1
distances and histograms (density, number of elements, the paper's property model d_E, CHGNet
energy), space-group histograms and Jensen–Shannon distances; the property model's predictions
of a set (cached)."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..parallel import ProcessPool
from .crystals import CACHE_VERSION, parse_crystal, read_cache

HIST_BINS = 40


def wdist(a, b) -> float | None:
    from scipy.stats import wasserstein_distance

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return None
    return float(wasserstein_distance(a, b))


def histogram(gen, ref, bins: int = HIST_BINS, integer: bool = False) -> dict:
    gen = np.asarray(gen, float)
    ref = np.asarray(ref, float)
    gen, ref = gen[np.isfinite(gen)], ref[np.isfinite(ref)]
    both = np.concatenate([gen, ref])
    if not len(both):
        return {"edges": [], "generated": [], "reference": []}
    lo, hi = float(both.min()), float(both.max())
    if integer:
        edges = np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    return {"edges": [float(e) for e in edges],
            "generated": np.histogram(gen, edges)[0].tolist(), "reference": np.histogram(ref, edges)[0].tolist()}


def space_group_histogram(values) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(int(x) for x in values).items())}


def js_distance(a, b) -> float | None:
    from scipy.spatial.distance import jensenshannon

    pa = np.bincount(np.asarray(a, dtype=np.int64), minlength=231)[:231].astype(float)
    pb = np.bincount(np.asarray(b, dtype=np.int64), minlength=231)[:231].astype(float)
    if pa.sum() == 0 or pb.sum() == 0:
        return None
    return float(jensenshannon(pa / pa.sum(), pb / pb.sum()))


def _graph_chunk(job):
    from .property_model import safe_crystal_graph

    warnings.simplefilter("ignore")
    return [safe_crystal_graph(parse_crystal(src)) for src in job]


def crystal_graphs(pool: ProcessPool, sources: Sequence, desc: str, chunk: int = 8) -> list:
    jobs = [list(sources[i:i + chunk]) for i in range(0, len(sources), chunk)]
    out: list = []
    for res in pool.map(_graph_chunk, jobs, desc, sizes=[len(j) for j in jobs]):
        out.extend(res)
    return out


def set_property(pool: ProcessPool, model, sources: list, source, cache_dir, desc: str) -> np.ndarray:
    """Property-model predictions for every crystal of a set (NaN where no graph), cached by the
    set's content hash and the weights' hash."""
    path = None
    if cache_dir is not None and isinstance(source, (str, os.PathLike)):
        from ..data.sources import content_hash

        path = (Path(cache_dir) / f"prop-{model.name}-{model.weights_hash[:16]}-{content_hash(source)[:32]}"
                f"-v{CACHE_VERSION}.npy")
        cached = read_cache(path, len(sources))
        if cached is not None:
            return cached
    values = model.predict_graphs(crystal_graphs(pool, sources, desc))
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
            np.save(tmp, values)
            os.replace(tmp, path)
    return values


def load_property_model(property_model, dataset: str | None, models_dir):
    """(model or None, reason when None). ``property_model``: "auto" (the dataset's model if its
    weights are found), None / "none" (no property model), or a model name or folder (must load)."""
    from .property_model import DATASET_PROPERTY_MODEL, PropertyModel

    if property_model is None or property_model == "none":
        return None, "not requested"
    if property_model == "auto":
        name = DATASET_PROPERTY_MODEL.get(dataset or "")
        if name is None:
            return None, f"no property model for dataset {dataset!r}"
        try:
            return PropertyModel.load(name, models_dir), None
        except FileNotFoundError as err:
            return None, str(err)
    return PropertyModel.load(property_model, models_dir), None
