"""Evaluation plots: the files exist and are valid PNG images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from diffcsp_pp.evaluate.csp import RowResult
from diffcsp_pp.evaluate.plots import crystal_system, plot_csp, plot_gen, reference_crystal_systems

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    import matplotlib.image

    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.parametrize("sg, system", [(1, "triclinic"), (2, "triclinic"), (15, "monoclinic"), (62, "orthorhombic"),
                                        (139, "tetragonal"), (166, "trigonal"), (194, "hexagonal"), (221, "cubic"),
                                        (0, "unknown"), (None, "unknown")])
def test_crystal_system(sg, system):
    assert crystal_system(sg) == system


def _metrics(energy: bool) -> dict:
    hist = {"edges": [1.0, 2.0, 3.0, 4.0], "generated": [1, 3, 1], "reference": [2, 2, 1]}
    m = {
        "histograms": {"space_group": {"generated": {"221": 3, "99": 2}, "training": {"221": 5, "25": 1},
                                       "reference": {"221": 2, "0": 1}},
                       "density": hist, "num_elements": hist},
        "protocol": {"space_group_symprec": 0.01},
        "space_group_js_distance_training": 0.3, "space_group_js_distance_reference": None,
        "wdist_density": 0.2, "wdist_energy": 0.1 if energy else None,
    }
    if energy:
        m["histograms"]["energy_per_atom"] = {"edges": [-8.0, -7.0], "generated": [5], "reference": [5]}
        m["histograms"]["property"] = {"edges": [-2.0, -1.0], "generated": [5], "reference": [4]}
        m["wdist_prop"] = 0.05
        m["protocol"]["property_model"] = {"target": "formation_energy_per_atom"}
    return m


def test_plot_gen_writes_pngs(tmp_path):
    paths = plot_gen(_metrics(energy=True), tmp_path / "out" / "metrics")
    assert [p.name for p in paths] == ["metrics.spacegroups.png", "metrics.density.png", "metrics.property.png",
                                       "metrics.energy.png"]
    for p in paths:
        _assert_png(p)
    paths = plot_gen(_metrics(energy=False), tmp_path / "m2")
    assert [p.name for p in paths] == ["m2.spacegroups.png", "m2.density.png"]
    empty = _metrics(energy=False)
    empty["histograms"]["density"] = {"edges": [], "generated": [], "reference": []}
    _assert_png(plot_gen(empty, tmp_path / "m3")[1])  # "no data" is still a valid image


def test_plot_csp_writes_pngs(tmp_path):
    rows = [RowResult(0, "a", 1, True, 0.05, 0.05, 1), RowResult(1, "b", 1, True, 0.1, None, 0),
            RowResult(2, "c", 0, True, None, None, 0), RowResult(3, "d", 1, True, 0.02, 0.02, 1)]
    systems = ["cubic", "cubic", "tetragonal", "unknown"]
    paths = plot_csp(rows, systems, tmp_path / "metrics")
    assert [p.name for p in paths] == ["metrics.rmse.png", "metrics.crystal_system.png"]
    for p in paths:
        _assert_png(p)
    with pytest.raises(ValueError):
        plot_csp(rows, systems[:2], tmp_path / "x")
    _assert_png(plot_csp([RowResult(0, "a", 0, False, None, None, 0)], ["cubic"], tmp_path / "none")[0])


def test_reference_crystal_systems():
    cubic = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    tetra = Structure(Lattice.tetragonal(3.9, 4.3), ["Sr", "Ti", "O", "O", "O"], cubic.frac_coords)
    assert reference_crystal_systems([cubic, tetra], 0.01) == ["cubic", "tetragonal"]


def test_evaluate_csp_cli_writes_plots(tmp_path):
    s = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["x", "y"], "cif": [str(CifWriter(s)), str(CifWriter(s.copy().scale_lattice(70.0)))]}
                 ).to_csv(ref, index=False)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "x.cif").write_text(str(CifWriter(s)))
    out = tmp_path / "res" / "metrics.json"
    res = subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", "evaluate", "csp", "--pred", str(pred),
                          "--ref", str(ref), "--out", str(out), "--quiet", "--no-fingerprint"],
                         check=False, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["match_rate"] == 0.5
    for name in ("rmse", "crystal_system"):
        path = tmp_path / "res" / f"metrics.{name}.png"
        _assert_png(path)
        assert str(path) in res.stdout
    assert np.isfinite(json.loads(out.read_text())["rmse"])
