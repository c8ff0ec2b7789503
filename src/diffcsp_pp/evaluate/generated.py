"""Reading the generated crystals to evaluate: a ``generate`` output folder, a CIF folder or a CSV."""

from __future__ import annotations

from pathlib import Path


def read_generated(path) -> tuple[list[tuple[str, str | None]], dict[str, int] | None]:
    """Generated crystals of a ``generate`` output folder (any layout, read by
    :mod:`diffcsp_pp.data.outputs`), a folder of CIFs or a CSV (material_id, cif).

    Returns:
        ([(name, CIF text or None if unreadable)], {name: requested space group} or None without a
        manifest). An output folder's record order is kept (it defines "earlier" for uniqueness).
    """
    from ..data import outputs
    from ..data.sources import is_csv, read_crystals
    from ..errors import DataError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if not is_csv(path):
            raise DataError(f"{path}: expected a folder of CIFs, a generate output folder or a CSV with a cif column")
        return [(raw.material_id, raw.cif) for raw in read_crystals(path)], None
    try:
        found = outputs.records(path)
        manifest = outputs.read_manifest(path)
    except ValueError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if not found:
        raise DataError(f"{path} contains no .cif files")
    requested = None if manifest is None else {r["name"]: int(r["space_group"]) for r in found if r.get("space_group")}
    items = []
    for r in found:
        try:
            items.append((r["name"], (path / r["file"]).read_text(errors="replace")))
        except OSError:
            items.append((r["name"], None))
    return items, requested
