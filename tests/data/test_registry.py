"""Dataset registry: checksums, local files, no silent download."""

from __future__ import annotations

import gzip

import pytest

from diffcsp_pp.data.registry import DATASETS, get_file, lookup, sha256_uncompressed, verify_file
from diffcsp_pp.errors import ChecksumError, DataError
from tests.conftest import FIXTURES, SHARED_DATA


def test_registry_contents():
    assert {"perov_5/train", "mp_20/train", "mpts_52/test", "carbon_24/val", "mp_20/pilot_test"} <= set(DATASETS)
    assert DATASETS["mp_20/train"].url.endswith("/data/mp_20/train.csv")
    assert DATASETS["mp_20/pilot_test"].url is None
    assert all(len(e.sha256) == 64 for e in DATASETS.values())
    with pytest.raises(ValueError, match="unknown dataset file"):
        lookup("mp_20/nope")


def test_wrong_file_is_rejected(tmp_path):
    with pytest.raises(ChecksumError, match="is not perov_5/test"):
        get_file("perov_5/test", local=FIXTURES / "perov_5_test.csv.gz")
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "missing.csv", DATASETS["perov_5/test"])


def test_local_only_files_are_never_downloaded(tmp_path):
    with pytest.raises(DataError, match="no URL"):
        get_file("mp_20/pilot_test", cache_dir=tmp_path)
    with pytest.raises(DataError, match="downloading is disabled"):
        get_file("mp_20/train", cache_dir=tmp_path, download=False)


def test_checksum_of_gzip_is_of_content(tmp_path):
    raw = b"material_id,cif\n"
    (tmp_path / "a.csv").write_bytes(raw)
    with gzip.open(tmp_path / "a.csv.gz", "wb") as fh:
        fh.write(raw)
    assert sha256_uncompressed(tmp_path / "a.csv") == sha256_uncompressed(tmp_path / "a.csv.gz")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_shared_benchmark_files_verify():
    for entry in DATASETS.values():
        local = SHARED_DATA / entry.dataset / f"{entry.split}.csv.gz"
        if local.is_file():
            assert get_file(entry.name, local=local) == local
