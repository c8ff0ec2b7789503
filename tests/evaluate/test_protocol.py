"""The paper's evaluation protocol pieces with known answers: SMACT14 vs ICSD24 oxidation states,
CDVAE's fixed composition scaling in COV, Wyckoff templates and the training-set hull."""

from __future__ import annotations

import math

import numpy as np
import pytest
import smact
from pymatgen.core import Composition, Lattice, Structure

from diffcsp_pp.evaluate.constants import CDVAE_COMP_SCALER_MEANS, CDVAE_COMP_SCALER_STDS
from diffcsp_pp.evaluate.gen import composition_fingerprint, evaluate_gen, hull_energies, wyckoff_template
from diffcsp_pp.evaluate.validity import composition_valid
from tests.conftest import load_fixture_structures


# ------------------------------------------------------------------------------ oxidation-state sets
def test_oxidation_state_lists_behind_the_known_answers():
    """The facts the hand checks below rest on (SMACT14 = SMACT < 3, ICSD24 = SMACT >= 3's default)."""
    tl, cu = smact.Element("Tl"), smact.Element("Cu")
    assert 2 not in tl.oxidation_states_smact14 and 2 in tl.oxidation_states
    assert 4 in cu.oxidation_states_smact14 and 4 not in cu.oxidation_states


@pytest.mark.parametrize(("elements", "counts", "smact14", "icsd24"), [
    # Cs Tl I3. SMACT14: Cs ±1, Tl −1/+1/+3, so Cs + Tl ∈ {−2, 0, 2, 4}; 3·q(I) = −(Cs + Tl) needs
    # q(I) = 0 (not an oxidation state) or a non-integer: invalid. ICSD24 has Tl+2: Cs+ Tl2+ 3 I− = 0,
    # and χ(Cs), χ(Tl) < χ(I): valid.
    (["Cs", "Tl", "I"], [1, 1, 3], False, True),
    # Rb2 Cu F6: 2·(+1) + q(Cu) + 6·(−1) = 0 needs Cu4+, in SMACT14 (valid: χ(Rb), χ(Cu) < χ(F)) but
    # not in ICSD24 (Cu +1..+3): invalid.
    (["Rb", "Cu", "F"], [2, 1, 6], True, False),
    # both sets agree on NaCl (valid) and NaCl2: q(Na) is odd (±1), so q(Na) + 2 q(Cl) = 0 has no
    # integer solution
    (["Na", "Cl"], [1, 1], True, True),
    (["Na", "Cl"], [1, 2], False, False),
])
def test_smact14_and_icsd24_known_answers(elements, counts, smact14, icsd24):
    assert composition_valid(elements, counts) is smact14  # the default is the paper's SMACT14
    assert composition_valid(elements, counts, oxidation_states="smact14") is smact14
    assert composition_valid(elements, counts, oxidation_states="icsd24") is icsd24


def test_unknown_oxidation_state_set_is_rejected():
    with pytest.raises(ValueError, match="oxidation_states"):
        composition_valid(["Na", "Cl"], [1, 1], oxidation_states="pmg")


def test_evaluate_gen_reports_both_sets():
    cstli = Structure(Lattice.cubic(6.2), ["Cs", "Tl", "I", "I", "I"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    m, rows = evaluate_gen([("a", cstli)], [cstli], [cstli], dataset="perov_5", energy=False, property_model=None,
                           progress=False)
    assert not rows[0].comp_valid and rows[0].comp_valid_icsd24
    assert m["comp_valid"] == 0.0 and m["comp_valid_icsd24"] == 1.0


# ------------------------------------------------------------------------------ COV composition scaling
def _rocksalt(a, cation, anion):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_cdvae_scaling_distance_by_hand():
    """NaCl generated, KCl reference: the same structure type (structure distance 0), so COV flips
    exactly at the composition distance. With CDVAE's constants that distance is
    ‖(fp(NaCl) − fp(KCl)) / std‖ over the features that are not NaN (the means cancel); with the
    training-set scaling over training = {NaCl, KCl} each feature that differs has std = |Δ|/2 and
    contributes 2, so the distance is 2·√(number of differing features)."""
    nacl, kcl = _rocksalt(5.64, "Na", "Cl"), _rocksalt(6.29, "K", "Cl")
    a, b = composition_fingerprint(nacl.composition), composition_fingerprint(kcl.composition)
    std = np.asarray(CDVAE_COMP_SCALER_STDS)
    ok = ~(np.isnan(a) | np.isnan(b))
    assert ok.sum() > 100 and np.isnan(a).sum() == np.isnan(b).sum()
    d_cdvae = math.sqrt(float(np.sum(((a[ok] - b[ok]) / std[ok]) ** 2)))
    d_train = 2 * math.sqrt(int(np.sum(a[ok] != b[ok])))
    assert abs(d_cdvae - d_train) > 0.5  # the two scalings really differ here

    def cov_r(comp_cutoff, scaling):
        m, _ = evaluate_gen([("g", nacl)], [kcl], [nacl, kcl], cutoffs=(0.01, comp_cutoff), energy=False,
                            property_model=None, composition_scaling=scaling, progress=False, dataset="mp_20")
        return m

    m = cov_r(d_cdvae + 1e-6, "cdvae")
    assert m["cov_recall"] == 1.0 and m["amcd_recall"] == pytest.approx(d_cdvae, rel=1e-9)
    assert cov_r(d_cdvae - 1e-6, "cdvae")["cov_recall"] == 0.0
    assert "CompScalerMeans" in m["protocol"]["composition_scaling"]
    m = cov_r(d_train + 1e-6, "train")
    assert m["cov_recall"] == 1.0 and m["amcd_recall"] == pytest.approx(d_train, rel=1e-9)
    assert cov_r(d_train - 1e-6, "train")["cov_recall"] == 0.0
    with pytest.raises(ValueError, match="composition_scaling"):
        cov_r(1.0, "test")


def test_cdvae_constants_are_in_magpie_order():
    """MP-20 crystals standardised with CDVAE's constants look standardised (CDVAE fit them on MP-20):
    a shifted or reordered vector would put features of very different scales against each other."""
    fps = np.array([composition_fingerprint(s.composition) for _, s in load_fixture_structures("mp_20_pilot_train.csv.gz")])
    z = (fps - np.asarray(CDVAE_COMP_SCALER_MEANS)) / np.asarray(CDVAE_COMP_SCALER_STDS)
    assert np.nanmean(np.abs(np.nanmean(z, axis=0))) < 0.5
    assert 0.4 < np.nanmedian(np.nanstd(z, axis=0)) < 2.0
    shifted = (fps - np.roll(CDVAE_COMP_SCALER_MEANS, 1)) / np.roll(CDVAE_COMP_SCALER_STDS, 1)
    assert np.nanmean(np.abs(np.nanmean(shifted, axis=0))) > 2.0


# ------------------------------------------------------------------------------ Wyckoff templates
def test_wyckoff_templates_and_novelty():
    sto = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    nacl, kcl = _rocksalt(5.64, "Na", "Cl"), _rocksalt(6.29, "K", "Cl")
    assert wyckoff_template(sto, 0.01) == (221, "221:a,b,c")
    assert wyckoff_template(nacl, 0.01) == (225, "225:a,b")
    assert wyckoff_template(nacl.get_primitive_structure(), 0.01) == (225, "225:a,b")  # cell-independent
    m, rows = evaluate_gen([("p", sto), ("n", nacl), ("n2", nacl.copy())], [kcl], [kcl.get_primitive_structure()],
                           dataset="perov_5", energy=False, property_model=None, progress=False)
    assert [r.novel_template for r in rows] == [True, False, False]  # elements do not matter
    assert m["distinct_templates"] == 2 and m["novel_template_rate"] == pytest.approx(1 / 3)
    assert m["novel_distinct_template_rate"] == pytest.approx(1 / 2)
    assert m["counts"]["training_templates"] == 1


# ------------------------------------------------------------------------------ hull
def test_hull_energies_by_hand():
    """Training: Na (−1 eV/atom), Cl (−2), NaCl (−2). Hull at x_Cl = 1/2 is −2, at 1/3 (Na2Cl) it is
    the Na–NaCl tie line: −1 − (1/3)/(1/2) = −5/3."""
    train = [Composition("Na"), Composition("Cl"), Composition("NaCl"), Composition("K")]
    e_train = np.array([-1.0, -2.0, -2.0, np.nan])  # K failed: no K reference
    gen = [Composition("NaCl"), Composition("Na2Cl"), Composition("KCl"), Composition("Na"), None]
    e_gen = np.array([-1.4, -2.0, -3.0, -1.0, -1.0])
    out = hull_energies(gen, e_gen, train, e_train)
    assert out[0] == pytest.approx(0.6)
    assert out[1] == pytest.approx(-2.0 + 5 / 3)  # below the hull: negative
    assert np.isnan(out[2]) and np.isnan(out[4])  # no K reference; no composition
    assert out[3] == pytest.approx(0.0)
