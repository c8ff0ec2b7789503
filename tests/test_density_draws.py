"""scripts/density_draws.py: d_ρ of the evaluated draw, of seeded redraws and of all valid crystals,
from the files evaluate gen writes; a too-small population is a clean error."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "density_draws.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_density_draws_against_an_independent_w1(tmp_path):
    ref_csv = FIXTURES / "perov_5_test.csv.gz"
    ref = np.sort([Structure.from_str(c, fmt="cif").density for c in pd.read_csv(ref_csv)["cif"][:200]])
    small = tmp_path / "ref.csv"
    pd.read_csv(ref_csv).iloc[:200].to_csv(small, index=False)
    rng = np.random.default_rng(1)
    dens = rng.normal(ref.mean() + 0.5, ref.std(), 60)
    rows = tmp_path / "metrics.rows.csv"
    pd.DataFrame({"valid": [True] * 50 + [False] * 10, "density": dens,
                  "in_property_sample": [True] * 20 + [False] * 40}).to_csv(rows, index=False)
    res = _run(rows, small, "--draws", "5", "--size", "20")
    assert res.returncode == 0, res.stderr

    def w1(a, b):  # Wasserstein-1 of two empirical distributions: the area between their CDFs
        grid = np.sort(np.concatenate([a, b]))
        ca = np.searchsorted(np.sort(a), grid[:-1], side="right") / len(a)
        cb = np.searchsorted(np.sort(b), grid[:-1], side="right") / len(b)
        return float(np.sum(np.abs(ca - cb) * np.diff(grid)))

    evaluated = float(re.search(r"evaluated draw \(20 crystals\): d_rho ([\d.]+)", res.stdout).group(1))
    assert evaluated == round(w1(dens[:20], ref), 3)
    everything = float(re.search(r"all 50 valid crystals: d_rho ([\d.]+)", res.stdout).group(1))
    assert everything == round(w1(dens[:50], ref), 3)  # the invalid ten are left out
    assert "5 draws of 20" in res.stdout
    too_many = _run(rows, small, "--size", "51")
    assert too_many.returncode == 1 and "50 valid crystals, fewer than --size 51" in too_many.stderr
