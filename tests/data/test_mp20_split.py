"""scripts/mp20_split.py: the near-full MP-20 split (issue #16) on the shared files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
NEEDED = [SHARED_DATA / "mp_20" / f"{n}.csv.gz"
          for n in ("train_partial", "pilot_train", "val_full", "val_biternary", "pilot_val")]


def _script():
    spec = importlib.util.spec_from_file_location("mp20_split", ROOT / "scripts" / "mp20_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not all(p.is_file() for p in NEEDED), reason="needs ../shared/data/mp_20 (near-full files)")
def test_split_counts_disjoint_and_seeded():
    split = _script()
    a = split.build_split(SHARED_DATA, 1000, 0)
    assert len(a["train_official"]) == 15837  # 15455 + 382 rows of pilot_train not in train_partial
    assert len(a["select"]) == 1000 and len(a["train"]) == 15837 + 9047 - 1000
    select = set(a["select"]["material_id"])
    assert not select & set(a["train"]["material_id"])  # the selection set is never trained on
    assert a["train"]["material_id"].is_unique and a["train"]["cif"].notna().all()
    unseen = set(a["select_unseen"]["material_id"])
    lite = set(pd.concat([pd.read_csv(SHARED_DATA / "mp_20" / f"{n}.csv.gz", usecols=["material_id"])
                          for n in ("val_biternary", "pilot_val", "pilot_train")])["material_id"])
    assert unseen == select - lite and len(unseen) == 179  # the rows the MP-20-lite models never saw
    b = split.build_split(SHARED_DATA, 1000, 0)
    assert set(b["select"]["material_id"]) == select  # fixed by the seed
    assert set(split.build_split(SHARED_DATA, 1000, 1)["select"]["material_id"]) != select
    with pytest.raises(ValueError, match="--select"):
        split.build_split(SHARED_DATA, 0, 0)


@pytest.mark.skipif(not all(p.is_file() for p in NEEDED), reason="needs ../shared/data/mp_20 (near-full files)")
def test_split_files_are_recognised_as_mp20(tmp_path, monkeypatch):
    """The script's split.json lets `evaluate` recognise its files (no --dataset needed)."""
    import sys

    from diffcsp_pp.evaluate.gen import detect_dataset

    split = _script()
    monkeypatch.setattr(sys, "argv", ["mp20_split.py", "--data", str(SHARED_DATA), "--out", str(tmp_path)])
    assert split.main() == 0
    for name in ("select", "select_300", "select_unseen", "train"):
        assert detect_dataset(tmp_path / f"{name}.csv.gz") == "mp_20"
