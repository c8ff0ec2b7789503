#!/usr/bin/env python
"""Markdown tables from the JSON summaries written by ``verify_symmetry.py --json``.

Usage: python scripts/symmetry_table.py docs/verification/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _failures(statuses: dict) -> str:
    bad = {k: v for k, v in statuses.items() if k not in ("ok", "ok_eval_tolerance", "ok_supercell")}
    return ", ".join(f"{k} {v}" for k, v in bad.items()) or "none"


def main(paths: list[str]) -> int:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    print("| file | rows | symprec | round trip ok | of which only at eval tolerance | of which only as supercell | not ok (reason: count) "
          "| rebuilt shows a supergroup at symprec | parse+analyse structures/s (1 process) | analyse wall s "
          "| check wall s | mean atoms (conv.) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        name = r["registry_name"] or Path(r["file"]).name
        print(
            f"| {name} | {r['rows']} | {r['symprec']} | {r['round_trip_success']} ({r['round_trip_success_pct']:.2f} %) "
            f"| {r['statuses'].get('ok_eval_tolerance', 0)} | {r['statuses'].get('ok_supercell', 0)} "
            f"| {_failures(r['statuses'])} "
            f"| {r['rebuilt_has_supergroup_at_symprec']} | {r['analyze_structures_per_s']} | {r['analyze_wall_s']} "
            f"| {r['check_wall_s']} | {r['mean_conventional_atoms']} |"
        )
    refs = [r for r in runs if r.get("reference_rows")]
    if refs:
        print()
        print("| file | rows compared | ours structures/s | official-style, no graph | official-style with CrystalNN graph "
              "| speed-up vs official-style | same space group | same Wyckoff letters | same multiplicities | same crystal |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in refs:
            name = r["registry_name"] or Path(r["file"]).name
            ours, full = r["ours_on_reference_rows_structures_per_s"], r["reference_with_crystalnn_structures_per_s"]
            n = r["reference_rows"]
            print(
                f"| {name} | {n} | {ours} | {r['reference_without_graph_structures_per_s']} | {full} "
                f"| {ours / full:.1f}× | {r['reference_same_space_group']}/{n} | {r['reference_same_wyckoff_letters']}/{n} "
                f"| {r['reference_same_multiplicities']}/{n} | {r.get('reference_same_crystal', '–')}/{n} |"
            )
    v = runs[0]["versions"]
    print()
    print(f"Versions: Python {v['python']}, spglib {v['spglib']}, pyxtal {v['pyxtal']}, pymatgen {v['pymatgen']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
