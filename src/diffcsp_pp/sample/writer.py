"""Writing predictions incrementally, at a cost per structure that does not grow with the run.

:class:`PredictionWriter` writes an output folder in the layout of :mod:`diffcsp_pp.data.outputs`
(which also reads it): per structure one symmetric CIF (pymatgen ``CifWriter`` with ``symprec``,
not P1) in a bucket folder, one extxyz frame and one JSON record appended to its shard; a small
``manifest.json`` summary at the end and at most every ``manifest_every`` seconds while running.

Crash safety, per batch: the CIFs are written (each atomically), then the extxyz frames appended,
then the records appended in one write. A batch that fails is undone (its CIFs removed, the
extxyz cut back); after a kill, the next writer of the shard cuts a torn record line and the
extxyz frames without records, and removes CIFs and temporary files without records from the
shard's last buckets, so a resumed run neither duplicates frames nor leaves orphans.

One writer process per shard: the shard is locked (``flock``) while open; a second run into the
same folder is refused. A rank of a distributed run writes its own shard
(:func:`diffcsp_pp.data.outputs.shard_name`).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..atomic import write_atomic, write_json_atomic
from ..data import outputs
from ..names import safe_output_name

#: spglib tolerance (Å) used to detect and write the symmetry of outputs.
WRITE_SYMPREC = 1e-3
#: Seconds between manifest updates while running (it is always written at the end).
MANIFEST_EVERY = 30.0


def symmetric_cif(structure) -> tuple[str, int]:
    """(CIF text, spglib space group at WRITE_SYMPREC). The CIF carries the space group when spglib
    finds one; a degenerate structure is written in P1 rather than failing."""
    from pymatgen.io.cif import CifWriter

    from ..symmetry.analyze import detect_space_group

    detected = detect_space_group(structure, WRITE_SYMPREC)
    return str(CifWriter(structure, symprec=WRITE_SYMPREC) if detected else CifWriter(structure)), detected


def unique_names(raw: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Safe output names (:func:`diffcsp_pp.names.safe_output_name`) for ``raw`` ids, unique: a
    name seen before (a repeated id, or two ids that sanitise alike) gets ``_2``, ``_3``... .
    Returns (names, [(raw id, name) of every renamed one]) in input order (deterministic, so a
    resumed run names the same rows the same)."""
    names, renamed, used = [], [], set()
    for r in raw:
        base = safe_output_name(str(r))
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
        if name != str(r):
            renamed.append((str(r), name))
    return names, renamed


def process_rank() -> int:
    """This process's global rank in a distributed run (0 otherwise)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class PredictionWriter:
    """Writes structures into the output folder ``out_dir`` (see the module docstring).

    Args:
        out_dir: the folder (``--out``).
        inputs: how the outputs are made (JSON-ready); a folder made with other inputs is refused.
        shard: the shard to write, locked at once (default: this process's rank, taken and locked
            at the first write: the rank of a distributed run is known once it has started).
        manifest_every: seconds between manifest updates while running (rank 0 writes it).
    """

    def __init__(self, out_dir: str | os.PathLike, inputs: dict, shard: str | None = None,
                 manifest_every: float = MANIFEST_EVERY):
        self.out, self.inputs, self.manifest_every = Path(out_dir), inputs, float(manifest_every)
        self._shard = shard
        previous = outputs.read_manifest(self.out)
        if previous is not None:
            if outputs.layout_of(previous) != outputs.LAYOUT:
                raise ValueError(f"{self.out} holds predictions in the layout of an older version (one manifest with "
                                 "every entry); it can still be read (evaluate, relax), but choose another --out")
            if previous.get("inputs") != inputs:
                raise ValueError(f"{self.out} holds predictions made with other arguments; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        known = outputs.records(self.out) if previous is not None else []
        self._done = {r["name"] for r in known}
        self._groups = {r["name"]: (r.get("space_group"), r.get("detected_space_group")) for r in known}
        self._session: set[str] = set()
        self._lock = self._records = None
        self._seq = self._xyz_size = 0
        self._last_manifest = time.monotonic()
        if previous is None:
            self._write_manifest(complete=False)
        if shard is not None:
            self._open()  # a second run into this shard is refused now, not after its first batch

    # -------------------------------------------------------------------------------- reading
    def done(self) -> set[str]:
        """Names already written (in any shard), whose CIF is on disk."""
        return set(self._done)

    @property
    def count(self) -> int:
        return len(self._groups)

    # -------------------------------------------------------------------------------- writing
    def add(self, items: Iterable) -> None:
        """``items``: (name, Structure, info dict) triples; writes them (see the module docstring).
        Names go through :func:`~diffcsp_pp.names.safe_output_name`; a name given twice to one
        writer is an error (use :func:`unique_names`)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        items = [(safe_output_name(str(n)), s, dict(info)) for n, s, info in items]
        names = [n for n, _, _ in items]
        repeated = sorted({n for n in names if names.count(n) > 1} | (set(names) & self._session))
        if repeated:
            raise ValueError(f"output name(s) given twice: {', '.join(repeated[:5])}")
        if not items:
            return
        self._open()
        written: list[Path] = []
        xyz_file = self.out / outputs.extxyz_path(self._shard)
        try:
            lines, frames, offset = [], io.BytesIO(), self._xyz_size
            for k, (name, structure, info) in enumerate(items):
                text, detected = symmetric_cif(structure)
                rel = outputs.cif_path(self._shard, self._seq + k, name)
                write_atomic(self.out / rel, text)
                written.append(self.out / rel)
                frame = _extxyz_frame(AseAtomsAdaptor.get_atoms(structure), name, info, detected)
                frames.write(frame)
                record = {"name": name, "file": rel, **info, "detected_space_group": detected,
                          "formula": structure.composition.reduced_formula, "num_atoms": len(structure),
                          "lattice": [round(float(v), 4) for v in (*structure.lattice.abc, *structure.lattice.angles)],
                          "frame": [offset, offset + len(frame)]}
                offset += len(frame)
                lines.append(json.dumps(record, separators=(",", ":")) + "\n")
            _append(xyz_file, frames.getvalue())
            _append_fh(self._records, "".join(lines).encode())
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            _truncate(xyz_file, self._xyz_size)
            self._records.truncate(self._records_size)
            raise
        self._seq += len(items)
        self._xyz_size = offset
        self._records_size = self._records.tell()
        for (name, _, info), line in zip(items, lines, strict=True):
            self._done.add(name)
            self._session.add(name)
            self._groups[name] = (info.get("space_group"), json.loads(line)["detected_space_group"])
        if time.monotonic() - self._last_manifest >= self.manifest_every:
            self._write_manifest(complete=False)

    def close(self, complete: bool = True) -> None:
        """Write the final manifest (rank 0; counted again from every shard's records when other
        shards exist, e.g. other ranks') and release the shard. ``complete``: every structure the
        run planned is written."""
        if self._owner():
            own = self._shard or outputs.shard_name(0)
            if any(p.stem != own for p in outputs.shards(self.out)):  # other shards may have grown since read
                found = outputs.records(self.out)
                self._groups = {r["name"]: (r.get("space_group"), r.get("detected_space_group")) for r in found}
            self._write_manifest(complete=complete)
        if self._records is not None:
            self._records.close()  # releases the lock
            self._records = None

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind, err, tb) -> None:
        self.close(complete=kind is None)

    # ------------------------------------------------------------------------------- internals
    def _owner(self) -> bool:
        return (self._shard or outputs.shard_name(process_rank())) == outputs.shard_name(0)

    def _open(self) -> None:
        """Lock this writer's shard and repair what a killed writer of it left."""
        if self._records is not None:
            return
        if self._shard is None:
            self._shard = outputs.shard_name(process_rank())
        path = self.out / outputs.records_path(self._shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a+b")
        if not _try_lock(fh):
            fh.close()
            raise ValueError(f"another run is writing to {self.out} (shard {self._shard} is locked); wait for it to "
                             "finish or choose another --out")
        # a torn last line (killed while appending) is cut; the records before it stay
        fh.seek(0)
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            fh.truncate(keep)
        mine = list(outputs.read_shard(path))
        self._records, self._records_size = fh, keep
        self._seq = len(mine)
        self._xyz_size = max((r.get("frame", [0, 0])[1] for r in mine), default=0)
        _truncate(self.out / outputs.extxyz_path(self._shard), self._xyz_size)  # frames without records
        self._sweep(mine)
        if self._owner():  # a resumed run: the manifest says so until its end
            self._write_manifest(complete=False)

    def _sweep(self, mine: list[dict]) -> None:
        """Remove CIFs and temporary files without a record from the buckets a killed batch of this
        shard may have written (the last one or two): no orphans, in O(bucket size)."""
        recorded = {r["file"] for r in mine}
        first = self._seq // outputs.CIFS_PER_FOLDER
        root = self.out / outputs.CIFS / self._shard
        if not root.is_dir():
            return
        for bucket in root.iterdir():
            if bucket.is_dir() and bucket.name.isdigit() and int(bucket.name) >= first:
                for f in bucket.iterdir():
                    if f.is_file() and f"{outputs.CIFS}/{self._shard}/{bucket.name}/{f.name}" not in recorded:
                        f.unlink()

    def _write_manifest(self, complete: bool) -> None:
        groups = list(self._groups.values())
        requested = [(sg, det) for sg, det in groups if sg]
        payload = {
            "package": "diffcsp-pp", "version": __version__, "layout": outputs.LAYOUT, "inputs": self.inputs,
            "count": len(groups),
            "requested_space_group_rate": (sum(sg == det for sg, det in requested) / len(requested)) if requested else None,
            "complete": bool(complete),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "records": f"{outputs.RECORDS}/*.jsonl",
        }
        write_json_atomic(self.out / outputs.MANIFEST, payload)
        self._last_manifest = time.monotonic()


def _extxyz_frame(atoms, name: str, info: dict, detected: int) -> bytes:
    from ase.io import write

    atoms.info.update({"name": name, "space_group": int(info.get("space_group") or 0),
                       "detected_space_group": detected})
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return buf.getvalue().encode()


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        _append_fh(fh, data)


def _append_fh(fh, data: bytes) -> None:
    fh.seek(0, os.SEEK_END)
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def _truncate(path: Path, size: int) -> None:
    if path.is_file() and path.stat().st_size > size:
        with path.open("r+b") as fh:
            fh.truncate(size)


def _try_lock(fh) -> bool:
    """An exclusive lock on an open file, without waiting (False: another process holds it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (one run per folder is then the user's to keep)
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
