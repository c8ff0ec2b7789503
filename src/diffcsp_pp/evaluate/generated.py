"""Reading the generated crystals to evaluate: a ``generate`` output folder, a CIF folder or a CSV."""

from __future__ import annotations

import json
from pathlib import Path


def read_generated(path) -> tuple[list[tuple[str, str | None]], dict[str, int] | None]:
    """Generated crystals of a ``generate`` output folder (``cifs/`` + ``manifest.json``), a folder of
    CIFs or a CSV (material_id, cif).

    Returns:
        ([(name, CIF text or None if unreadable)], {name: requested space group} or None without a
        manifest). With a manifest, its entry order is kept (it defines "earlier" for uniqueness),
        followed by CIFs it does not list, by name.
    """
    from ..data.sources import CIF_SUFFIXES, is_csv, read_crystals
    from ..errors import DataError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if not is_csv(path):
            raise DataError(f"{path}: expected a folder of CIFs, a generate output folder or a CSV with a cif column")
        return [(raw.material_id, raw.cif) for raw in read_crystals(path)], None
    cif_dir = path / "cifs" if (path / "cifs").is_dir() else path
    files = {p.name: p for p in sorted(cif_dir.iterdir()) if p.suffix in CIF_SUFFIXES and p.is_file()}
    manifest = path / "manifest.json"
    order: list[tuple[str, Path]] = []
    requested: dict[str, int] | None = None
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())["entries"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"cannot read {manifest}: {err}") from None
        requested = {}
        for e in entries:
            fname = Path(str(e.get("file", f"{e.get('name')}.cif"))).name
            if fname in files:
                name = str(e.get("name", Path(fname).stem))
                order.append((name, files.pop(fname)))
                if e.get("space_group"):
                    requested[name] = int(e["space_group"])
    order += [(Path(n).stem, p) for n, p in sorted(files.items())]
    if not order:
        raise DataError(f"{cif_dir} contains no .cif files")
    items = []
    for name, p in order:
        try:
            items.append((name, p.read_text(errors="replace")))
        except OSError:
            items.append((name, None))
    return items, requested
