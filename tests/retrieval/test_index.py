"""Template index: count-pattern candidates (with formula-unit multiples), file roundtrip, substitution."""

from __future__ import annotations

import numpy as np
import pytest

from diffcsp_pp.retrieval.index import TemplateIndex, count_key
from diffcsp_pp.retrieval.retrieve import retrieve, substituted_info
from diffcsp_pp.retrieval.scorer import Scorer
from diffcsp_pp.retrieval.substitution import substitution_map
from diffcsp_pp.symmetry.wyckoff import expand_orbits, wrap_diff


def _ids(index, found):
    return {str(index.material_id[i]) for i, _ in found}


def test_count_key():
    assert count_key({"Sr": 1, "Ti": 1, "O": 3}) == "1,1,3" == count_key([3, 1, 1])


def test_candidates_with_formula_unit_multiples(tiny_index):
    # rock salt holds 4 Na + 4 Cl in its conventional cell: NaCl (z = 4), Na2Cl2 (z = 2), KBr match it
    for formula, z in [({"Na": 1, "Cl": 1}, 4), ({"Na": 2, "Cl": 2}, 2), ({"K": 1, "Br": 1}, 4), ({"Na": 4, "Cl": 4}, 1)]:
        found = tiny_index.candidates(formula)
        assert _ids(tiny_index, found) == {"rocksalt-NaCl"} and found[0][1] == z
    assert tiny_index.candidates({"Na": 1, "Cl": 2}) == []
    assert tiny_index.candidates({"Na": 3, "Cl": 3}) == []  # 6 atoms: no multiple gives 4 + 4
    assert tiny_index.candidates({"Na": 1, "Cl": 1}, max_atoms=6) == []  # the cap excludes z = 4
    # perovskites ABX3 (1,1,3) never match ABX2Y (1,1,1,2)
    abx3 = tiny_index.candidates({"Sr": 1, "Ti": 1, "O": 3})
    assert abx3 and all(tiny_index.count_keys[i] == "1,1,3" and z == 1 for i, z in abx3)
    assert _ids(tiny_index, abx3).isdisjoint(_ids(tiny_index, tiny_index.candidates({"K": 1, "Nb": 1, "O": 2, "N": 1})))


def test_index_roundtrip_and_substituted_template(tiny_index, fixture_infos, tmp_path):
    path = tiny_index.save(tmp_path)
    data = np.load(path, allow_pickle=False)  # no object arrays
    assert all(data[k].dtype != object for k in data.files)
    loaded = TemplateIndex.load(tmp_path)
    assert len(loaded) == len(tiny_index) == len(fixture_infos)
    assert np.allclose(loaded.features, tiny_index.features, atol=1e-2)
    for row in (0, 7, len(fixture_infos) - 1):
        info = fixture_infos[row]
        ident = {el: el for el in set(info.species)}
        back = substituted_info(loaded, row, ident)
        assert back.space_group == info.space_group and back.wyckoff_letters == info.wyckoff_letters
        assert np.array_equal(back.wyckoff_ops, info.wyckoff_ops) and np.array_equal(back.anchor_idx, info.anchor_idx)
        assert np.abs(wrap_diff(back.frac_coords, info.frac_coords)).max() < 1e-6
        assert np.allclose(back.k, info.k, atol=1e-5)
        assert np.allclose(expand_orbits(back.frac_coords, back.wyckoff_ops, back.anchor_idx), back.frac_coords)


def test_hungarian_substitution_maps_similar_elements():
    # Ba and Ti share the count 1: Sr (alkaline earth) takes Ba's site, Zr (group 4) Ti's
    assert substitution_map({"Ba": 1, "Ti": 1, "O": 3}, {"Zr": 1, "Sr": 1, "O": 3}) == {"Ba": "Sr", "Ti": "Zr", "O": "O"}
    assert substitution_map({"Ti": 1, "Ba": 1, "O": 3}, {"Sr": 1, "Zr": 1, "S": 3}) == {"Ba": "Sr", "Ti": "Zr", "O": "S"}
    # three elements with count 1: alkali -> alkali, group 5 -> group 5, pnictogen -> pnictogen
    got = substitution_map({"K": 1, "Nb": 1, "N": 1, "O": 2}, {"P": 1, "Rb": 1, "Ta": 1, "S": 2})
    assert got == {"K": "Rb", "Nb": "Ta", "N": "P", "O": "S"}
    with pytest.raises(ValueError, match="count patterns differ"):
        substitution_map({"Na": 1, "Cl": 1}, {"Na": 1, "Cl": 2})


def test_retrieve_ranks_and_substitutes(tiny_index):
    cands = retrieve(tiny_index, Scorer("euclidean"), {"Pt": 1, "In": 1, "N": 3}, top_k=3)
    assert [c.rank for c in cands] == [1, 2, 3] and cands[0].score >= cands[1].score >= cands[2].score
    top = cands[0]
    assert top.score > -0.05  # PtInN3 itself is a fixture row: identical composition first
    assert sorted(top.info.atom_species) == sorted(["Pt", "In", "N", "N", "N"])
    assert top.info.space_group == top.template_space_group
    nacl = retrieve(tiny_index, Scorer("euclidean"), {"K": 1, "Br": 1}, top_k=5)
    assert len(nacl) == 1 and nacl[0].formula_units == 4 and nacl[0].substitution == {"Na": "K", "Cl": "Br"}
    assert nacl[0].provenance()["source"] == "template"
    assert retrieve(tiny_index, Scorer("euclidean"), {"Na": 1, "Cl": 2}) == []


def test_magpie_properties_read_without_matminer_are_matminers():
    """element_table reads matminer's Magpie files directly (no matminer import at start-up): the
    values, imputation of missing ones included, must be MagpieData's for every property we use."""
    from matminer.utils.data import MagpieData
    from pymatgen.core.periodic_table import Element

    from diffcsp_pp.retrieval.substitution import MAGPIE_PROPERTIES, SUBSTITUTION_PROPERTIES, magpie_property

    data = MagpieData().all_elemental_props
    for name in sorted(set(MAGPIE_PROPERTIES) | set(SUBSTITUTION_PROPERTIES)):
        expected = np.array([float(data[name][Element.from_Z(z).symbol]) for z in range(1, 119)])
        np.testing.assert_array_equal(magpie_property(name), expected, err_msg=name)


@pytest.mark.parametrize("formula, plain_has_repeats", [({"Na": 1, "Cl": 1}, True), ({"Ga": 1, "As": 1}, True),
                                                        ({"Sr": 1, "Ti": 1, "O": 3}, False)])
def test_retrieve_returns_distinct_structures(formula, plain_has_repeats):
    """top-k of the bundled MP-20 index: the greedy rule checked by brute force against the plain
    ranking — a candidate is skipped exactly when an earlier kept one has its space group and
    pymatgen's StructureMatcher (the CSP benchmark's tolerances, full structure reduction at every
    comparison) matches the two; retrieve's shortcuts (cell size first, each structure reduced once)
    must not change the result."""
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from diffcsp_pp.folder import ModelFolder

    warnings.simplefilter("ignore")
    index, scorer = ModelFolder.resolve("mp20-csp").template_index()
    plain = retrieve(index, scorer, formula, top_k=40, distinct=False)
    got = retrieve(index, scorer, formula, top_k=5)
    assert [c.rank for c in got] == [1, 2, 3, 4, 5]
    assert got[0].material_id == plain[0].material_id
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    kept = []
    for c in plain:
        s = c.info.to_structure()
        if not any(c.template_space_group == k.template_space_group and matcher.fit(s, k.info.to_structure())
                   for k in kept):
            kept.append(c)
    assert [c.material_id for c in got] == [c.material_id for c in kept[:5]]
    # rock salt and zinc blende sit in the training set under many elements: the plain top 5 repeats them
    assert ([c.material_id for c in plain[:5]] != [c.material_id for c in got]) == plain_has_repeats
    for c in got:  # the kept templates are exactly in their space group
        assert SpacegroupAnalyzer(c.info.to_structure(), symprec=0.01).get_space_group_number() == c.template_space_group
