"""Plots of evaluation results, as PNG files written beside ``metrics.json``.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no display, and the global
backend of the calling process is left alone).

- generation (:func:`plot_gen`, from the ``metrics`` dict of
  :func:`~diffcsp_pp.evaluate.gen.evaluate_gen` alone): space-group histogram of generated vs
  training vs reference crystals, density histogram and, when computed, energy histogram of the
  property sample vs the reference set.
- CSP (:func:`plot_csp`, from the rows of :func:`~diffcsp_pp.evaluate.csp.evaluate_csp`): histogram of
  the RMSE of matched rows and match rate per crystal system (crystal system of the reference's
  space group).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: (name, first, last space-group number) of the seven crystal systems.
CRYSTAL_SYSTEMS = (
    ("triclinic", 1, 2), ("monoclinic", 3, 15), ("orthorhombic", 16, 74), ("tetragonal", 75, 142),
    ("trigonal", 143, 167), ("hexagonal", 168, 194), ("cubic", 195, 230),
)


def crystal_system(space_group: int | None) -> str:
    """Crystal system of a space-group number; ``"unknown"`` for 0, None or out of range."""
    if space_group:
        for name, lo, hi in CRYSTAL_SYSTEMS:
            if lo <= int(space_group) <= hi:
                return name
    return "unknown"


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _stairs(ax, hist: dict, xlabel: str, title: str) -> None:
    edges = np.asarray(hist.get("edges", []), float)
    if len(edges) < 2:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        width = np.diff(edges)
        for key, color in (("reference", "tab:gray"), ("generated", "tab:blue")):
            counts = np.asarray(hist.get(key, []), float)
            if counts.sum() > 0:
                ax.stairs(counts / counts.sum() / width, edges, label=f"{key} (n={int(counts.sum())})",
                          color=color, fill=key == "reference", alpha=0.45 if key == "reference" else 1.0,
                          linewidth=1.6)
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density of crystals")
    ax.set_title(title)


def plot_gen(metrics: dict, prefix) -> list[Path]:
    """PNGs of a generation evaluation: ``<prefix>.spacegroups.png``, ``<prefix>.density.png`` and
    ``<prefix>.energy.png`` (when energies were computed). Returns the paths written."""
    prefix = Path(prefix)
    hists = metrics["histograms"]
    paths = []

    fig, ax = _figure(10, 4)
    sg = hists["space_group"]
    series = [("generated", "tab:blue"), ("training", "tab:orange"), ("reference", "tab:gray")]
    numbers = sorted({int(k) for key, _ in series for k in sg.get(key, {})})
    x = np.arange(len(numbers))
    width = 0.8 / len(series)
    for j, (key, color) in enumerate(series):
        counts = np.array([sg.get(key, {}).get(str(n), 0) for n in numbers], float)
        total = counts.sum()
        if total:
            ax.bar(x + (j - 1) * width, counts / total, width, label=f"{key} (n={int(total)})", color=color)
    ax.set_xticks(x, [str(n) if n else "none" for n in numbers], rotation=90 if len(numbers) > 12 else 0,
                  fontsize=8 if len(numbers) > 30 else 10)
    ax.set_xlabel(f"space group (spglib, symprec {metrics['protocol']['space_group_symprec']:g} Å)")
    ax.set_ylabel("fraction of crystals")
    ax.set_title(f"space groups; Jensen-Shannon distance to training "
                 f"{_fmt(metrics.get('space_group_js_distance_training'), 3)}, "
                 f"to reference {_fmt(metrics.get('space_group_js_distance_reference'), 3)}")
    ax.legend()
    paths.append(_save(fig, prefix.with_name(prefix.name + ".spacegroups.png")))

    fig, ax = _figure()
    _stairs(ax, hists["density"], "density (g/cm³)",
            f"density; W1 distance {_fmt(metrics.get('wdist_density'))}")
    paths.append(_save(fig, prefix.with_name(prefix.name + ".density.png")))

    if "property" in hists:
        fig, ax = _figure()
        label = (metrics.get("protocol", {}).get("property_model") or {}).get("target", "property")
        _stairs(ax, hists["property"], f"predicted {label} (paper's DimeNet++ property model)",
                f"d_E; W1 distance {_fmt(metrics.get('wdist_prop'))}")
        paths.append(_save(fig, prefix.with_name(prefix.name + ".property.png")))

    if "energy_per_atom" in hists:
        fig, ax = _figure()
        _stairs(ax, hists["energy_per_atom"], "predicted energy per atom (eV/atom, CHGNet)",
                f"energy; W1 distance {_fmt(metrics.get('wdist_energy'))}")
        paths.append(_save(fig, prefix.with_name(prefix.name + ".energy.png")))
    return paths


def reference_crystal_systems(structures: Sequence, symprec: float = 0.1) -> list[str]:
    """Crystal system of each reference Structure (spglib at ``symprec``)."""
    from ..symmetry.analyze import detect_space_group

    out = []
    for s in structures:
        try:
            out.append(crystal_system(detect_space_group(s, symprec)))
        except Exception:  # noqa: BLE001 - spglib failure: unknown system
            out.append("unknown")
    return out


def plot_csp(rows: Sequence, systems: Sequence[str], prefix) -> list[Path]:
    """PNGs of a CSP evaluation: ``<prefix>.rmse.png`` (RMSE of the matched rows) and
    ``<prefix>.crystal_system.png`` (match rate by the reference's crystal system).

    Args:
        rows: :class:`~diffcsp_pp.evaluate.csp.RowResult` per reference row.
        systems: crystal system of each row's reference (:func:`reference_crystal_systems`).
    """
    if len(rows) != len(systems):
        raise ValueError(f"{len(rows)} rows but {len(systems)} crystal systems")
    prefix = Path(prefix)
    paths = []

    rms = np.array([r.best_rms_gated for r in rows if r.best_rms_gated is not None], float)
    fig, ax = _figure()
    if len(rms):
        ax.hist(rms, bins=min(40, max(5, len(rms) // 5)), color="tab:blue")
        ax.axvline(rms.mean(), color="k", linestyle="--", label=f"mean {rms.mean():.4f}")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no matched rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("normalised RMS displacement of matched rows")
    ax.set_ylabel("rows")
    ax.set_title(f"RMSE; {len(rms)} of {len(rows)} rows matched")
    paths.append(_save(fig, prefix.with_name(prefix.name + ".rmse.png")))

    names = [n for n, _, _ in CRYSTAL_SYSTEMS] + ["unknown"]
    total = {n: 0 for n in names}
    matched = {n: 0 for n in names}
    for r, system in zip(rows, systems, strict=True):
        total[system] += 1
        matched[system] += r.best_rms_gated is not None
    present = [n for n in names if total[n]]
    rates = [matched[n] / total[n] for n in present]
    fig, ax = _figure()
    bars = ax.bar(present, rates, color="tab:green")
    for bar, n in zip(bars, present, strict=True):
        ax.annotate(f"{matched[n]}/{total[n]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("match rate")
    ax.set_title("match rate by crystal system of the reference")
    ax.tick_params(axis="x", labelrotation=30)
    paths.append(_save(fig, prefix.with_name(prefix.name + ".crystal_system.png")))
    return paths


__all__ = ["CRYSTAL_SYSTEMS", "crystal_system", "plot_csp", "plot_gen", "reference_crystal_systems"]
