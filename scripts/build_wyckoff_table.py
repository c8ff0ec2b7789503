#!/usr/bin/env python
"""Write the Wyckoff table of the 230 space groups (src/diffcsp_pp/symmetry/wyckoff_table.npz) from pyxtal.

Usage: python scripts/build_wyckoff_table.py

The package reads its Wyckoff positions (:func:`diffcsp_pp.symmetry.wyckoff.wyckoff_positions`) from
this file instead of importing pyxtal at run time (pyxtal's package import alone costs about 1.2 s of
every command's start-up). The file holds, per position in pyxtal's order (general position first),
its group, letter, multiplicity, site-symmetry symbol and its affine operations as exact multiples
of 1/24 (int8, 3 x 4 each); ``tests/symmetry/test_wyckoff.py`` checks it against the installed pyxtal
for all 230 groups. Rerun after a pyxtal upgrade changes a table (the test says so).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "diffcsp_pp" / "symmetry" / "wyckoff_table.npz"
DENOMINATOR = 24


def table() -> dict[str, np.ndarray]:
    import pyxtal
    from pyxtal.symmetry import Group

    groups, letters, mults, sites, starts, ops = [], [], [], [], [], []
    for number in range(1, 231):
        for wp in Group(number):
            try:
                wp.get_site_symmetry()
                site = str(wp.site_symm)
            except Exception:  # noqa: BLE001 - informative only, as in wyckoff_positions
                site = ""
            mats = np.stack([op.affine_matrix for op in wp.ops])[:, :3, :]
            scaled = np.round(mats * DENOMINATOR)
            if not np.allclose(scaled / DENOMINATOR, mats, atol=1e-9) or np.abs(scaled).max() > 127:
                raise ValueError(f"group {number} {wp.letter}: operations are not multiples of 1/{DENOMINATOR}")
            groups.append(number)
            letters.append(wp.letter)
            mults.append(int(wp.multiplicity))
            sites.append(site)
            starts.append(starts[-1] + len(ops[-1]) if ops else 0)
            ops.append(scaled.astype(np.int8))
    return {"group": np.array(groups, np.int16), "letter": np.array(letters), "multiplicity": np.array(mults, np.int16),
            "site_symmetry": np.array(sites), "start": np.array(starts, np.int32),
            "ops": np.concatenate(ops), "denominator": np.array(DENOMINATOR),
            "pyxtal_version": np.array(pyxtal.__version__)}


def main() -> int:
    data = table()
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB): {len(data['group'])} positions, {len(data['ops'])} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
