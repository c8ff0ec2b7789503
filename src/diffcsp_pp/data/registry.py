"""Registry of the benchmark CSVs: names, official URLs, sha256 of the uncompressed files.

The official files live in ``data/<dataset>/<split>.csv`` of the public DiffCSP repository
(jiaor17/DiffCSP); checksums are those of ``shared/data/README.md`` (uncompressed CSV bytes). The
"MP-20-lite" subsets are genuine rows of the official splits that are distributed with this
project's data folder only (no URL), as are the near-full MP-20 files (``train_partial``, ``val_full``,
``test_full``: official rows with re-written CIF text). :func:`get_file` accepts a local path (plain or gzip) and
verifies it; it downloads only when no local path is given and a URL is known.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import ChecksumError, DataError

_OFFICIAL_URL = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data/{dataset}/{split}.csv"


@dataclass(frozen=True)
class DatasetFile:
    """One benchmark CSV.

    Attributes:
        dataset: ``perov_5``, ``mp_20``, ``mpts_52`` or ``carbon_24``.
        split: ``train``/``val``/``test`` or a subset name (``pilot_test``, ...).
        sha256: hex digest of the uncompressed CSV.
        symprec: spglib tolerance the benchmark uses for this dataset (METHOD §6).
        rows: number of crystals, when known.
        size: bytes of the uncompressed CSV, when known.
        url: where the official file can be downloaded (None for local-only subsets).
    """

    dataset: str
    split: str
    sha256: str
    symprec: float
    rows: int | None = None
    size: int | None = None
    url: str | None = None

    @property
    def name(self) -> str:
        """``dataset/split``, e.g. ``"mp_20/train"``."""
        return f"{self.dataset}/{self.split}"


def _official(dataset: str, split: str, sha: str, symprec: float, rows=None, size=None):
    url = _OFFICIAL_URL.format(dataset=dataset, split=split)
    return DatasetFile(dataset, split, sha, symprec, rows, size, url)


_FILES = [
    _official("perov_5", "train", "6144a97ead4828a781a1c269c56fedc34b65945977c6433a055a720c47bf77f6", 0.01, 11356),
    _official("perov_5", "val", "efb9c832756439747f093e03a35daf073fcc9a5fc43a8a5292addee2f3d7ce90", 0.01, 3787),
    _official("perov_5", "test", "2511340f0e08b25699e9386e100ae0b30cd9b9c8a5b29622c3533644e04c95fa", 0.01, 3785),
    _official("mp_20", "train", "9c5a34b3684ff4b86d87a86c1c42298d1d28322ea0f03059d9e80ab6a2b729a7", 0.1, 27136, 80920549),
    _official("mp_20", "val", "68e101e777c168429d84feb5bf1c5432f1a1b625884f72499c54c4d68e7ee73a", 0.1, 9047, 26864684),
    _official("mp_20", "test", "6d63e5d7a607866d94014b3e8ae34f0b9f4d6a2b2332bbc50fd3ec976f487231", 0.1, 9046, 26846148),
    _official("mpts_52", "train", "db33cfc86530bbd4b020405989c5cd12130f447ad7b9258d29b3ff9c8a26d764", 0.1, None, 45705353),
    _official("mpts_52", "val", "b5d9f7a8ff72f3a1f24d6bb97e11ad201be40d10be7b27924234da06af04baba", 0.1, 5000, 9941357),
    _official("mpts_52", "test", "4d6e76c4726fb12fb2a7e5bb23594f9b82dbd9bf67b7bfd4866e9c74a8f49038", 0.1, None, 16358482),
    _official("carbon_24", "train", "79b4465695d82b23abb56e9b855ac4841eb991ff3e0952a44b0ca3857e1a304a", 0.1, None, 15214751),
    _official("carbon_24", "val", "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e", 0.1, 2032, 2321923),
    _official("carbon_24", "test", "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969", 0.1, None, 2319350),
    # MP-20-lite: genuine subsets of the official MP-20 splits (local files only).
    DatasetFile("mp_20", "pilot_train", "0886381eb4bb65fc58bbb91f066139b4dc914b1d7252ab17d57b67d2c271742a", 0.1, 1000),
    DatasetFile("mp_20", "pilot_val", "8b17bf9ddb4f30de54d195a41f18f4e12232ec451b54d5df2d11e278e49e5bce", 0.1, 1000),
    DatasetFile("mp_20", "pilot_test", "e59e691ec1ebb83c84a2eaec274f3654d23fcea729d8d4d52022b5dd02e3eb50", 0.1, 1000),
    DatasetFile("mp_20", "val_biternary", "8f14dfefa9beb88739e5e21d75c797265f51b754105613a20aee9d1478e01e86", 0.1, 7140),
    DatasetFile("mp_20", "test_biternary", "f8fe51d9eacfc3ec4f7614399b79383a8e158ddd3c54137eb182027d1a866276", 0.1, 7118),
    # MP-20 at near-full scale (local files only): the complete official val and test splits and 57 %
    # of the official train split, re-written CIF text (same crystals as the official rows; the
    # checksums can never equal the official files'). scripts/mp20_split.py builds the split from them.
    DatasetFile("mp_20", "train_partial", "34ba397e4682fd7652a11a98ac25d0541347a04187d8dbdd03bb69bfb62758ba", 0.1, 15455),
    DatasetFile("mp_20", "val_full", "63121b2eee26807aab38633b232e39e8c74de82eadd6e99ebae31b70d6e7a4f0", 0.1, 9047),
    DatasetFile("mp_20", "test_full", "5157572f1b910a789cc21748f5e23c2fabffb61a3fcd75aca0bb78ae79a97c93", 0.1, 9046),
    DatasetFile("mpts_52", "train_partial", "b751bf5c4a79e62114dbdd9faef4cae3e4f65edbac7b5d2ceeed26d606d9ffb1", 0.1, 12751),
]

#: All known files by name (``"mp_20/train"``, ...).
DATASETS: dict[str, DatasetFile] = {f.name: f for f in _FILES}


def lookup(name: str) -> DatasetFile:
    """Registry entry by ``dataset/split`` name; ValueError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset file {name!r}; known: {', '.join(DATASETS)}") from None


def open_text_bytes(path: str | os.PathLike):
    """Open a file for binary reading, transparently decompressing ``.gz``."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def sha256_uncompressed(path: str | os.PathLike) -> str:
    """sha256 of a file's (uncompressed, if ``.gz``) bytes."""
    digest = hashlib.sha256()
    try:
        with open_text_bytes(path) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    return digest.hexdigest()


def find_by_checksum(sha256: str) -> DatasetFile | None:
    """The registry entry whose uncompressed checksum is ``sha256``, if any."""
    for entry in _FILES:
        if entry.sha256 == sha256:
            return entry
    return None


def verify_file(path: str | os.PathLike, entry: DatasetFile) -> Path:
    """Check a local file (plain or gzip) against the registry; returns its path.

    Raises:
        FileNotFoundError: the path does not exist.
        ChecksumError: the uncompressed content has another sha256.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    got = sha256_uncompressed(path)
    if got != entry.sha256:
        raise ChecksumError(f"{path} is not {entry.name}: sha256 {got[:16]}... != {entry.sha256[:16]}...")
    return path


def default_cache_dir() -> Path:
    """``$DIFFCSP_PP_CACHE`` or ``~/.cache/diffcsp_pp``."""
    return Path(os.environ.get("DIFFCSP_PP_CACHE", Path.home() / ".cache" / "diffcsp_pp"))


def get_file(
    name: str,
    local: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """Path of a verified benchmark CSV.

    Args:
        name: ``dataset/split``, e.g. ``"perov_5/train"``.
        local: a local copy (``.csv`` or ``.csv.gz``); it is verified and returned.
        cache_dir: where downloads are kept (default :func:`default_cache_dir`).
        download: allow fetching the official URL when no verified copy is present.
    """
    entry = lookup(name)
    if local is not None:
        return verify_file(local, entry)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "datasets" / entry.dataset / f"{entry.split}.csv"
    if target.is_file():
        return verify_file(target, entry)
    if not download or entry.url is None:
        where = "no URL is known for it" if entry.url is None else "downloading is disabled"
        raise DataError(f"{name} is not in {target.parent} and {where}; pass a local path")
    with atomic_path(target) as tmp:  # a failed download or checksum leaves nothing behind
        try:
            with urllib.request.urlopen(entry.url, timeout=60) as resp, tmp.open("wb") as f:  # noqa: S310 - fixed https URL
                shutil.copyfileobj(resp, f)
        except OSError as err:
            raise DataError(f"cannot download {entry.url}: {err}; pass a local path") from None
        verify_file(tmp, entry)
    return target
