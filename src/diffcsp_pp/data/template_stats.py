"""How often each symmetry pattern occurs in a model's training data (``template_stats.json``).

The file maps a pattern key to its count. Two kinds of key, both written by :meth:`TemplateStats.key`
and read back only by :meth:`TemplateStats.parse`:

- species-free: ``"221:1a,1b,3c"`` (space group, Wyckoff labels sorted);
- species-resolved: ``"221:O:3c,Sr:1a,Ti:1b"`` (element:label pairs sorted).

Readers use the parsed views (:meth:`patterns`, :meth:`decorations`, :meth:`count`); the JSON is
read by :meth:`read` and written by :meth:`write` only (the model folder,
:class:`diffcsp_pp.folder.ModelFolder`, calls them).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..atomic import write_atomic
from ..errors import DataError


class TemplateStats:
    """Pattern counts of a training set (see the module docstring)."""

    def __init__(self, counts: Mapping[str, int] | None = None):
        self.counts: dict[str, int] = {str(k): int(v) for k, v in (counts or {}).items()}

    # ------------------------------------------------------------------------------ the format
    @staticmethod
    def key(space_group: int, labels: Sequence[str], species: Sequence[str] | None = None) -> str:
        """The key of a pattern: ``"221:1a,1b,3c"`` or, with species, ``"221:O:3c,Sr:1a,Ti:1b"``."""
        if species is None:
            return f"{space_group}:{','.join(sorted(labels))}"
        return f"{space_group}:{','.join(sorted(f'{el}:{lab}' for el, lab in zip(species, labels, strict=True)))}"

    @staticmethod
    def parse(key: str) -> tuple[int, tuple[str, ...], tuple[str, ...] | None] | None:
        """(space group, labels, species or None) of a key; None for a malformed key."""
        sg, _, rest = str(key).partition(":")
        if not sg.isdigit() or not rest:
            return None
        tokens = rest.split(",")
        if all(":" in t for t in tokens):
            pairs = [t.partition(":") for t in tokens]
            return int(sg), tuple(lab for _, _, lab in pairs), tuple(el for el, _, _ in pairs)
        if any(":" in t for t in tokens):
            return None
        return int(sg), tuple(tokens), None

    @classmethod
    def from_infos(cls, infos: Iterable) -> TemplateStats:
        """Counts of the space group + Wyckoff labels of SymmetryInfos, with and without species
        (most frequent first)."""
        counts: Counter = Counter()
        for i in infos:
            counts[cls.key(i.space_group, i.wyckoff_letters)] += 1
            counts[cls.key(i.space_group, i.wyckoff_letters, i.species)] += 1
        return cls(dict(counts.most_common()))

    @classmethod
    def of(cls, stats: TemplateStats | Mapping[str, int] | None) -> TemplateStats:
        """``stats`` as TemplateStats (a plain mapping is taken as the file's content)."""
        return stats if isinstance(stats, TemplateStats) else cls(stats)

    # ---------------------------------------------------------------------------------- files
    @classmethod
    def read(cls, path: str | os.PathLike) -> TemplateStats:
        """The statistics in ``path`` (empty when the file does not exist)."""
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            counts = json.loads(path.read_text())
            if not isinstance(counts, dict):
                raise ValueError("not a JSON object")
            return cls(counts)
        except (OSError, ValueError, TypeError) as err:
            raise DataError(f"cannot read the template statistics {path}: {err}") from None

    def write(self, path: str | os.PathLike) -> Path:
        """Write the statistics to ``path`` (atomically)."""
        return write_atomic(path, json.dumps(self.counts))

    # ----------------------------------------------------------------------------------- views
    def __bool__(self) -> bool:
        return bool(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def count(self, space_group: int, labels: Sequence[str], species: Sequence[str] | None = None) -> int:
        """Training count of a pattern (0 if unseen)."""
        return self.counts.get(self.key(space_group, labels, species), 0)

    def patterns(self) -> list[tuple[int, tuple[str, ...], int]]:
        """(space group, labels, count) of every species-free pattern, in file order."""
        out = []
        for key, count in self.counts.items():
            parsed = self.parse(key)
            if parsed is not None and parsed[2] is None:
                out.append((parsed[0], parsed[1], count))
        return out

    def decorations(self, space_group: int | None = None) -> list[tuple[int, tuple[tuple[str, str], ...], int]]:
        """(space group, ((element, label), ...), count) of every species-resolved pattern (of one
        space group only, if given: the keys are filtered by their prefix before any parsing)."""
        out = []
        prefix = None if space_group is None else f"{int(space_group)}:"
        for key, count in self.counts.items():
            if prefix is not None and not key.startswith(prefix):
                continue
            parsed = self.parse(key)
            if parsed is not None and parsed[2] is not None:
                out.append((parsed[0], tuple(zip(parsed[2], parsed[1], strict=True)), count))
        return out
