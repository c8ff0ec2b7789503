"""How much the paper's d_ρ depends on its one draw of 1,000 valid crystals.

The paper's protocol (METHOD §7.3) computes d_ρ, the Wasserstein-1 distance between the densities of
generated and reference crystals, on one random draw of 1,000 valid generated crystals. This script
reads what ``diffcsp-pp evaluate gen`` wrote (``metrics.rows.csv`` beside ``metrics.json``: each
generated crystal's validity, density and whether it was in the evaluated draw), the reference CSV,
and prints d_ρ for the evaluated draw, for ``--draws`` other seeded draws of the same size, and for
all valid crystals.

Usage: python scripts/density_draws.py runs/results/mp20_test_gen/metrics.rows.csv \
           ../shared/data/mp_20/test_full.csv.gz [--draws 20] [--size 1000]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", help="metrics.rows.csv of evaluate gen")
    parser.add_argument("ref", help="the reference CSV (material_id, cif) given to evaluate gen")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    import pandas as pd
    from pymatgen.core import Structure
    from scipy.stats import wasserstein_distance

    rows = pd.read_csv(args.rows)
    valid = rows[rows["valid"].astype(bool)]
    if len(valid) < args.size:
        raise SystemExit(f"{args.rows}: {len(valid)} valid crystals, fewer than --size {args.size}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns about rounding
        ref = np.array([Structure.from_str(c, fmt="cif").density for c in pd.read_csv(args.ref)["cif"]])
    evaluated = valid[valid["in_property_sample"].astype(bool)]["density"].to_numpy()
    print(f"evaluated draw ({len(evaluated)} crystals): d_rho {wasserstein_distance(evaluated, ref):.3f}")
    dens = valid["density"].to_numpy()
    draws = [wasserstein_distance(dens[np.random.default_rng(seed).choice(len(dens), args.size, replace=False)], ref)
             for seed in range(args.draws)]
    q = np.quantile(draws, [0.0, 0.5, 1.0])
    print(f"{args.draws} draws of {args.size} (seeds 0..{args.draws - 1}): mean {np.mean(draws):.3f}, sd "
          f"{np.std(draws):.3f}, min {q[0]:.3f}, median {q[1]:.3f}, max {q[2]:.3f}")
    print(f"all {len(dens)} valid crystals: d_rho {wasserstein_distance(dens, ref):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
