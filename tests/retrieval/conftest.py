"""Fixtures of the retrieval tests: a tiny template index built from real Perov-5 rows plus rock salt."""

from __future__ import annotations

import pytest

from tests.conftest import load_fixture_structures


def rock_salt(a: float = 5.64, cation: str = "Na", anion: str = "Cl"):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="session")
def fixture_infos():
    """SymmetryInfos of the 30 Perov-5 fixture rows (symprec 0.01) and a rock-salt NaCl (8 atoms)."""
    from diffcsp_pp.symmetry.analyze import analyze

    infos = [analyze(s, symprec=0.01, structure_id=mid) for mid, s in load_fixture_structures("perov_5_test.csv.gz")]
    infos.append(analyze(rock_salt(), symprec=0.01, structure_id="rocksalt-NaCl"))
    return infos


@pytest.fixture(scope="session")
def tiny_index(fixture_infos):
    from diffcsp_pp.retrieval.index import index_from_infos

    return index_from_infos(fixture_infos, {"sources": [{"file": "fixtures", "symprec": 0.01}]})
