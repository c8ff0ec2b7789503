"""Element substitution of a retrieved template (METHOD §7.2 item 4).

The template and the query have the same sorted multiset of per-element counts (the query's counts
times the formula-unit multiple z). Elements are grouped by count: a count held by one element in
each maps directly; a count held by several elements is resolved by the Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) on the Euclidean distance between standardised elemental
property vectors.

Elemental properties (matminer's Magpie elemental table, ``matminer.utils.data.MagpieData``),
standardised over the elements Z = 1-103 (mean 0, std 1 per property):
``SUBSTITUTION_PROPERTIES`` = Mendeleev number (a chemical-similarity ordering), group (column),
period (row), covalent radius, Pauling electronegativity, the s/p/d/f valence-electron counts and
the first ionisation energy: size, electronegativity and valence shell, the quantities that decide
which site an ion takes. This set was compared on Perov-5 validation with the 22 properties of the
Magpie composition fingerprint (see ``docs/bench/cspml_perov5.json``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

SUBSTITUTION_PROPERTIES = (
    "MendeleevNumber", "Column", "Row", "CovalentRadius", "Electronegativity",
    "NsValence", "NpValence", "NdValence", "NfValence", "FirstIonizationEnergy",
)
#: The 22 elemental properties behind the Magpie composition fingerprint (the alternative compared).
MAGPIE_PROPERTIES = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
    "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence", "NsUnfilled",
    "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom",
    "SpaceGroupNumber",
)
_MAX_Z = 103


@lru_cache(maxsize=4)
def element_table(properties: tuple[str, ...] = SUBSTITUTION_PROPERTIES) -> dict[str, np.ndarray]:
    """Symbol -> standardised property vector, for Z = 1-103 (missing values -> the mean, i.e. 0)."""
    from pymatgen.core.periodic_table import Element

    symbols = [Element.from_Z(z).symbol for z in range(1, _MAX_Z + 1)]
    table = np.stack([magpie_property(p)[:_MAX_Z] for p in properties], axis=1)
    mean, std = np.nanmean(table, 0), np.nanstd(table, 0)
    table = np.nan_to_num((table - mean) / np.where(std > 0, std, 1.0), nan=0.0)
    return dict(zip(symbols, table, strict=True))


#: elements in matminer's Magpie tables (its ``MagpieData`` reads Z = 1-118)
_MAGPIE_Z = 118


@lru_cache(maxsize=64)
def magpie_property(name: str) -> np.ndarray:
    """One Magpie elemental property for Z = 1-118, as ``matminer.utils.data.MagpieData()`` gives it
    (a missing or unparsable value is the mean of the others), read from matminer's data file
    without importing matminer (its import costs about 0.6 s of a command's start-up)."""
    import importlib.util

    spec = importlib.util.find_spec("matminer")
    roots = list(spec.submodule_search_locations or []) if spec else []
    files = (Path(r) / "utils" / "data_files" / "magpie_elementdata" / f"{name}.table" for r in roots)
    path = next((f for f in files if f.is_file()), None)
    if path is None:  # another matminer layout: ask matminer itself
        from matminer.utils.data import MagpieData
        from pymatgen.core.periodic_table import Element

        data = MagpieData().all_elemental_props[name]
        return np.array([_float(data.get(Element.from_Z(z).symbol)) for z in range(1, _MAGPIE_Z + 1)])
    lines = path.read_text().splitlines()
    values = np.array([_float(lines[z]) if z < len(lines) else np.nan for z in range(_MAGPIE_Z)])
    return np.where(np.isnan(values), np.nanmean(values), values)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def element_vector(symbol: str, properties: tuple[str, ...] = SUBSTITUTION_PROPERTIES) -> np.ndarray:
    table = element_table(properties)
    if symbol not in table:
        raise ValueError(f"no elemental properties for {symbol!r} (elements up to Z = {_MAX_Z} are supported)")
    return table[symbol]


def substitution_map(template_counts: Mapping[str, int], query_counts: Mapping[str, int],
                     properties: tuple[str, ...] = SUBSTITUTION_PROPERTIES) -> dict[str, str]:
    """Template element -> query element, for compositions with equal sorted count multisets.

    Args:
        template_counts: atoms per element in the template cell.
        query_counts: atoms per element of the query in the same cell (already times z).

    Raises:
        ValueError: the count multisets differ.
    """
    if sorted(template_counts.values()) != sorted(query_counts.values()):
        raise ValueError(f"count patterns differ: template {dict(template_counts)} vs query {dict(query_counts)}")
    by_count_t: dict[int, list[str]] = defaultdict(list)
    by_count_q: dict[int, list[str]] = defaultdict(list)
    for el, n in template_counts.items():
        by_count_t[int(n)].append(el)
    for el, n in query_counts.items():
        by_count_q[int(n)].append(el)
    mapping: dict[str, str] = {}
    for count, t_els in by_count_t.items():
        q_els = by_count_q[count]
        if len(t_els) == 1:
            mapping[t_els[0]] = q_els[0]
            continue
        t_sorted, q_sorted = sorted(t_els), sorted(q_els)
        mapping.update(_hungarian(t_sorted, q_sorted, properties))
    return mapping


def _hungarian(t_els: Sequence[str], q_els: Sequence[str], properties: tuple[str, ...]) -> dict[str, str]:
    from scipy.optimize import linear_sum_assignment

    a = np.stack([element_vector(e, properties) for e in t_els])
    b = np.stack([element_vector(e, properties) for e in q_els])
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return {t_els[r]: q_els[c] for r, c in zip(rows, cols, strict=True)}
