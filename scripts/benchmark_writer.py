#!/usr/bin/env python
"""Writer overhead per structure in a folder that already holds N structures, old vs new layout.

The old writer (one ``manifest.json`` listing every entry, rewritten after each batch; every CIF in
one folder) is the module as it was before issue #21, loaded from git (``--old-rev``); the new
one is :class:`diffcsp_pp.sample.writer.PredictionWriter` (append-only JSON Lines records, CIFs in
bucket folders, a small manifest). Each folder is first filled synthetically with N records and
N CIF files (copies of one real CIF: only the bookkeeping matters), then ``--batches`` batches of
``--batch`` real Perov-5 crystals are added and timed. ``cif only`` is the cost of making the
CIF texts (spglib + CifWriter) alone, the same in both; overhead = add - cif only.
``--bookkeeping`` gives both writers a precomputed CIF text, so add is the writer's own cost.

    python scripts/benchmark_writer.py [--sizes 1000 10000 100000] [--batch 100] [--batches 3] [--bookkeeping]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))


def old_writer_module(rev: str):
    """The writer module of ``rev`` (before issue #21), importable beside the current package."""
    import diffcsp_pp.sample

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/diffcsp_pp/sample/writer.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("diffcsp_pp.sample._writer_v1")
    module.__package__ = diffcsp_pp.sample.__name__
    exec(compile(source, f"{rev}:writer.py", "exec"), module.__dict__)
    return module


def fill_old(folder: Path, n: int, cif: str, entry: dict, inputs: dict, files: bool = True) -> list[dict]:
    (folder / "cifs").mkdir(parents=True)
    entries = []
    for i in range(n):
        name = f"x{i:07d}"
        if files:
            (folder / "cifs" / f"{name}.cif").write_text(cif)
        entries.append({**entry, "name": name, "file": f"cifs/{name}.cif"})
    (folder / "manifest.json").write_text(json.dumps({"package": "diffcsp-pp", "version": "0", "inputs": inputs,
                                                      "count": n, "requested_space_group_rate": 1.0,
                                                      "entries": entries}, indent=1))
    return entries


def fill_new(folder: Path, n: int, cif: str, entry: dict, inputs: dict, files: bool = True) -> None:
    from diffcsp_pp.data import outputs

    shard = outputs.shard_name(0)
    lines = []
    for i in range(n):
        name = f"x{i:07d}"
        rel = outputs.cif_path(shard, i, name)
        if files:
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(cif)
        lines.append(json.dumps({**entry, "name": name, "file": rel, "frame": [0, 0]}, separators=(",", ":")) + "\n")
    (folder / outputs.RECORDS).mkdir(parents=True)
    (folder / outputs.records_path(shard)).write_text("".join(lines))
    (folder / outputs.MANIFEST).write_text(json.dumps({"package": "diffcsp-pp", "version": "0", "layout": outputs.LAYOUT,
                                                       "inputs": inputs, "count": n, "complete": False}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--old-rev", default="b29768f", help="a commit before issue #21")
    parser.add_argument("--out", help="JSON of the results (default: print only)")
    parser.add_argument("--no-files", action="store_true",
                        help="fill without creating the N CIF files (slow on a loaded disk): the old writer gets its "
                             "N entries in memory after opening, the new one's N records point at missing files "
                             "(its add does not read them); open times then lack the files")
    parser.add_argument("--bookkeeping", action="store_true",
                        help="replace the CIF making (spglib + CifWriter) by a precomputed text in both writers, "
                             "so the times are the writers' own: files, extxyz, records / manifest")
    args = parser.parse_args()

    from diffcsp_pp.sample.writer import PredictionWriter, symmetric_cif
    from tests.conftest import load_fixture_structures

    old = old_writer_module(args.old_rev)
    crystals = [s for _, s in load_fixture_structures("perov_5_test.csv.gz")]
    batch = [crystals[i % len(crystals)] for i in range(args.batch)]
    cif, detected = symmetric_cif(batch[0])
    entry = {"space_group": detected, "seed": 0, "detected_space_group": detected, "formula": "X", "num_atoms": 5,
             "lattice": [4.0, 4.0, 4.0, 90.0, 90.0, 90.0]}
    inputs = {"benchmark": True}
    if args.bookkeeping:
        import diffcsp_pp.sample.writer as new_module

        def precomputed(structure):
            return cif, detected

        old.symmetric_cif = new_module.symmetric_cif = precomputed

    start = time.perf_counter()
    for s in batch:
        symmetric_cif(s)
    cif_only = (time.perf_counter() - start) / len(batch)
    if args.bookkeeping:
        cif_only = 0.0
    results = {"batch": args.batch, "cif_only_ms": 1e3 * cif_only, "bookkeeping": args.bookkeeping,
               "no_files": args.no_files, "sizes": {}}
    print(f"cif only: {1e3 * cif_only:.2f} ms/structure (batch {args.batch})")
    for n in args.sizes:
        row = {}
        for layout, fill in (("old", fill_old), ("new", fill_new)):
            tmp = Path(tempfile.mkdtemp(prefix=f"writer_{layout}_{n}_"))
            try:
                folder = tmp / "out"
                folder.mkdir()
                filled = fill(folder, n, cif, entry, inputs, files=not args.no_files)
                t0 = time.perf_counter()
                w = old.PredictionWriter(folder, inputs) if layout == "old" else \
                    PredictionWriter(folder, inputs, shard="r00000")
                open_s = time.perf_counter() - t0
                if layout == "old" and args.no_files:
                    w.entries = list(filled)
                adds = []
                for b in range(args.batches):
                    items = [(f"b{b}_{i}", s, {"space_group": detected, "seed": 0}) for i, s in enumerate(batch)]
                    t0 = time.perf_counter()
                    w.add(items)
                    adds.append((time.perf_counter() - t0) / len(batch))
                t0 = time.perf_counter()
                if layout == "new":
                    w.close()
                close_s = time.perf_counter() - t0
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            add = statistics.median(adds)
            row[layout] = {"open_s": open_s, "add_ms": 1e3 * add, "overhead_ms": 1e3 * (add - cif_only),
                           "close_s": close_s}
            print(f"N={n:>7} {layout}: open {open_s:7.2f} s, add {1e3 * add:8.2f} ms/structure "
                  f"(overhead {1e3 * (add - cif_only):8.2f} ms), close {close_s:6.2f} s", flush=True)
        results["sizes"][n] = row
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
