"""Output folders of ``predict`` / ``generate`` / ``relax``: the layout, and the one reader.

Every reader of an output folder (``evaluate csp``, ``evaluate gen``, ``relax``, the CLI's
summaries) goes through this module; the writer is :class:`diffcsp_pp.sample.writer.PredictionWriter`.

Layout 2 (written since issue #21; the cost of writing a structure does not grow with the folder)::

    manifest.json                  small summary: inputs, weights (the model's SHA-256 and training
                                   step), count, requested-space-group rate, complete (false while
                                   running); no per-structure entries
    records/<shard>.jsonl          one JSON record per structure, appended (a shard per writer
                                   process: rank r of a distributed run writes shard "r%05d")
    cifs/<shard>/<bucket>/<name>.cif   symmetric CIFs, at most CIFS_PER_FOLDER per bucket folder
    extxyz/<shard>.extxyz          every structure of the shard as an extxyz frame

A record holds ``name``, ``file`` (the CIF, relative to the folder), the provenance of the
structure (requested ``space_group``, ``seed``, ``wyckoff``, ...), what the writer measured
(``detected_space_group``, ``formula``, ``num_atoms``, ``lattice``) and ``frame`` (the byte range
of its extxyz frame). A name written twice (a structure whose CIF was lost and drawn again, by
the same or another rank) is read as its last record whose CIF exists.

Layout 1 (before issue #21, still read): ``cifs/<name>.cif``, ``structures.extxyz`` and a
``manifest.json`` whose ``entries`` list every record. A folder without a manifest is read as a
folder of CIF files (searched recursively; the name is the file's stem).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

#: Current layout version (``manifest.json`` ``"layout"``; a manifest without it is layout 1).
LAYOUT = 2
MANIFEST = "manifest.json"
RECORDS = "records"
CIFS = "cifs"
EXTXYZ = "extxyz"
#: Most CIF files in one bucket folder.
CIFS_PER_FOLDER = 1000

_CIF_SUFFIXES = (".cif", ".CIF")


# ------------------------------------------------------------------------------------ layout
def shard_name(rank: int) -> str:
    """The shard written by process ``rank`` of a run (0 for a single process)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be a non-negative integer, got {rank!r}")
    return f"r{rank:05d}"


def records_path(shard: str) -> str:
    return f"{RECORDS}/{shard}.jsonl"


def extxyz_path(shard: str) -> str:
    return f"{EXTXYZ}/{shard}.extxyz"


def cif_path(shard: str, seq: int, name: str) -> str:
    """Where the ``seq``-th CIF of ``shard`` (0-based, in writing order) goes."""
    return f"{CIFS}/{shard}/{seq // CIFS_PER_FOLDER:05d}/{name}.cif"


# ----------------------------------------------------------------------------------- reading
def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of an output folder (None without one). ValueError if it is not one of ours."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a manifest of this package: {err}") from None
    if not isinstance(payload, dict) or ("entries" not in payload and payload.get("layout") != LAYOUT):
        raise ValueError(f"{path} is not a manifest of this package")
    return payload


def layout_of(manifest: dict) -> int:
    return int(manifest.get("layout", 1))


def read_shard(path: str | Path) -> Iterator[dict]:
    """The records of one JSON Lines shard, in writing order. A last line without its newline (a
    run killed while appending) is not a record; any other unreadable line is an error."""
    path = Path(path)
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                return  # torn tail
            try:
                record = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {number} is not a JSON record: {err}") from None
            if not isinstance(record, dict) or "name" not in record or "file" not in record:
                raise ValueError(f"{path}: line {number} is not a record of this package")
            yield record


def shards(folder: str | Path) -> list[Path]:
    """The record shards of a layout-2 folder, sorted by name."""
    return sorted((Path(folder) / RECORDS).glob("*.jsonl"))


def records(folder: str | Path, existing: bool = True) -> list[dict]:
    """Every structure of an output folder as a record dict (``name``, ``file`` relative to the
    folder, and the rest of its record), in a stable order: by ``index`` (its position in the
    job's input) when every record has one, else in writing order (shard by shard).

    Layout 2: the last record of each name. Layout 1: the manifest's entries, then CIFs of
    ``cifs/`` it does not list (by name). A folder without a manifest: its CIF files (recursively,
    or in ``cifs/``), named by their stems. ``existing``: only records whose CIF is on disk.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        root = folder / CIFS if (folder / CIFS).is_dir() else folder
        return [{"name": p.stem, "file": p.relative_to(folder).as_posix()}
                for p in sorted(root.rglob("*")) if p.suffix in _CIF_SUFFIXES and p.is_file()]
    if layout_of(manifest) == 1:
        out, listed = [], set()
        for e in manifest.get("entries") or []:
            if not isinstance(e, dict) or "name" not in e:
                raise ValueError(f"{folder / MANIFEST} has an entry without a name: {e!r}")
            e = {**e, "file": _check_inside(folder, str(e.get("file", f"{CIFS}/{e['name']}.cif")))}
            listed.add(e["file"])
            if not existing or (folder / e["file"]).is_file():
                out.append(e)
        cifs = folder / CIFS
        if cifs.is_dir():
            out += [{"name": p.stem, "file": f"{CIFS}/{p.name}"} for p in sorted(cifs.iterdir())
                    if p.suffix in _CIF_SUFFIXES and p.is_file() and f"{CIFS}/{p.name}" not in listed]
        return out
    latest: dict[str, dict] = {}
    for shard in shards(folder):
        for r in read_shard(shard):
            old = latest.get(r["name"])
            if old is not None and not (folder / r["file"]).is_file() and (folder / old["file"]).is_file():
                continue  # a name in two shards (redrawn by another rank): the record whose CIF exists
            latest.pop(r["name"], None)  # a rewritten name moves to its latest position
            latest[r["name"]] = r
    for r in latest.values():
        _check_inside(folder, r["file"])
    out = [r for r in latest.values() if not existing or (folder / r["file"]).is_file()]
    if out and all(isinstance(r.get("index"), int) for r in out):
        out.sort(key=lambda r: r["index"])
    return out


def _check_inside(folder: Path, rel: str) -> str:
    """``rel`` if it names a file inside ``folder`` (a record never points elsewhere)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"{folder}: a record points outside the folder: {rel!r}")
    return rel


def done_names(folder: str | Path) -> set[str]:
    """Names whose CIF is written (what a resumed run skips)."""
    return {r["name"] for r in records(folder)} if read_manifest(folder) is not None else set()


def space_group_rate(records_: list[dict]) -> float | None:
    """Fraction of the records with a requested space group whose detected group equals it."""
    requested = [r for r in records_ if r.get("space_group")]
    if not requested:
        return None
    return sum(r.get("detected_space_group") == r["space_group"] for r in requested) / len(requested)


def summary(folder: str | Path) -> dict:
    """``count``, ``requested_space_group_rate``, ``inputs`` and ``complete`` of an output folder:
    its manifest's (layout 2 writes them at the end and at most every few seconds while running;
    layout 1 always), or counted from the records of a folder without a manifest."""
    manifest = read_manifest(folder)
    if manifest is None:
        found = records(folder)
        return {"count": len(found), "requested_space_group_rate": None, "inputs": None, "complete": None}
    out = {k: v for k, v in manifest.items() if k != "entries"}
    out.setdefault("complete", None)
    return out
