"""safe_output_name: every result is one harmless path component, checked by the OS itself."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcsp_pp.names import MAX_NAME_LENGTH, safe_output_name

_SHAPE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


def _assert_safe(name: str) -> None:
    assert _SHAPE.fullmatch(name), name
    assert ".." not in name and not name.endswith(".")
    assert 0 < len(name) <= MAX_NAME_LENGTH
    assert os.path.basename(name) == name and Path(name).name == name
    assert name.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "com1", "lpt1"}


@pytest.mark.parametrize("raw", ["mp-1234", "agm002153", "1234_0", "Li2O.v2", "mp-20+x"])
def test_safe_names_are_kept(raw):
    assert safe_output_name(raw) == raw


@pytest.mark.parametrize(
    "raw",
    ["../../x", "/abs/path/x", "a/b", "a\\b", "..", ".", "", ".hidden", "-rf", "x\x00y", "a\nb",
     "CON", "nul.cif", "Ca(OH)2", "名前", "x" * 1000, "a..b", "trailing."],
)
def test_unsafe_names_are_changed_and_contained(raw, tmp_path):
    name = safe_output_name(raw)
    assert name != raw
    _assert_safe(name)
    # The OS agrees: a file made from it lands directly inside the folder.
    target = (tmp_path / f"{name}.cif").resolve()
    target.write_text("x")
    assert target.parent == tmp_path.resolve()


def test_distinct_unsafe_ids_do_not_collide():
    names = {safe_output_name(r) for r in ["a/b", "a\\b", "a:b", "a b", "a_b/", "../a_b"]}
    assert len(names) == 6


def test_not_a_string_is_a_value_error():
    with pytest.raises(ValueError, match="must be a string"):
        safe_output_name(None)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_any_text_gives_a_safe_stable_name(raw):
    name = safe_output_name(raw)
    _assert_safe(name)
    assert safe_output_name(raw) == name  # stable
    assert safe_output_name(name) == name  # idempotent: a safe name is kept


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_different_changed_ids_get_different_names(a, b):
    na, nb = safe_output_name(a), safe_output_name(b)
    if a != b and na != a and nb != b:
        assert na != nb
