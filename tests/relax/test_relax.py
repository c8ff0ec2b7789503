"""Symmetry-preserving relaxation with the real CHGNet (and ASE's EMT as a pluggable calculator).

Lattice references are experimental (room temperature): CHGNet, trained on PBE relaxations,
overestimates them by about 1 %, so 2 % is the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from diffcsp_pp.relax import (
    RelaxError,
    RelaxSettings,
    load_potential,
    rank_by_energy,
    relax_and_rank,
    relax_structures,
    single_point_energies,
)
from diffcsp_pp.symmetry.analyze import analyze, detect_space_group
from tests.conftest import load_fixture_structures

FAST = RelaxSettings(max_steps=60)


@pytest.fixture(scope="module")
def chgnet():
    return load_potential("chgnet")


def perovskite(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def rock_salt(a: float) -> Structure:
    return Structure.from_spacegroup(225, Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_distorted_perovskite_relaxes_to_its_lattice_with_fire(chgnet):
    # the README's SrTiO3 prediction (a = 4.127 Å); experiment 3.905 Å
    [r] = relax_structures([perovskite(4.127)], chgnet, RelaxSettings(optimizer="FIRE"))
    assert r.status == "converged" and r.relaxed
    assert r.structure.lattice.abc == pytest.approx((3.905,) * 3, rel=0.02)
    assert detect_space_group(r.structure, 1e-3) == 221 == r.detected_space_group
    assert r.energy_after < r.energy_before and r.steps > 0 and r.max_force_after < 0.05
    assert r.max_stress_after < RelaxSettings().max_stress
    prov = r.structure.properties["relax"]
    assert prov["potential"].startswith("CHGNet 0.3.0") and prov["steps"] == r.steps
    assert r.structure.properties["energy_per_atom"] == pytest.approx(r.energy_after, abs=1e-5)


def test_compressed_rock_salt_relaxes_back_and_keeps_fm3m(chgnet):
    [r] = relax_structures([rock_salt(5.2)], chgnet, FAST)  # experiment 5.640 Å
    assert r.status == "converged"
    assert r.structure.lattice.abc == pytest.approx((5.640,) * 3, rel=0.02)
    assert detect_space_group(r.structure, 1e-3) == 225
    # the reported energy is CHGNet's, computed independently on the returned structure
    ref = chgnet._chgnet.predict_structure(r.structure, task="e")["e"]
    assert r.energy_after == pytest.approx(float(ref), abs=1e-4)


def test_fix_symmetry_keeps_a_low_symmetry_group_with_free_coordinates(chgnet):
    # CaLaMnMoO6 in Pc (7): no inversion, every atom on a general position (x, y, z all free)
    mid, s = next((m, s) for m, s in load_fixture_structures("mp_20_pilot_train.csv.gz") if m == "mp-684705")
    exact = analyze(s, symprec=0.1).to_structure()
    assert detect_space_group(exact, 1e-3) == 7
    a, b, c, al, be, ga = exact.lattice.parameters
    strained = Structure(Lattice.from_parameters(a * 1.04, b * 0.97, c * 1.02, al, be + 2.0, ga),
                         exact.species, exact.frac_coords, properties={"space_group": 7})
    [r] = relax_structures([strained], chgnet, RelaxSettings(max_steps=15))
    assert r.relaxed and r.steps > 0 and r.energy_after < r.energy_before
    assert detect_space_group(r.structure, 1e-3) == 7
    # the atoms did move (positions relaxed, not only the cell)
    assert not np.allclose(r.structure.frac_coords, strained.frac_coords, atol=1e-4)


def test_lockstep_batch_gives_the_same_relaxations_as_one_at_a_time(chgnet):
    inputs = [perovskite(4.0), rock_salt(5.5)]
    together = relax_structures(inputs, chgnet, FAST, batch_size=2)
    alone = [relax_structures([s], chgnet, FAST, batch_size=1)[0] for s in inputs]
    for t, a in zip(together, alone):
        assert t.steps == a.steps and t.status == a.status
        assert t.energy_after == pytest.approx(a.energy_after, abs=1e-4)
        assert t.structure.lattice.abc == pytest.approx(a.structure.lattice.abc, abs=1e-4)


def test_any_ase_calculator_plugs_in():
    from ase.calculators.emt import EMT

    cu = Structure.from_spacegroup(225, Lattice.cubic(3.8), ["Cu"], [[0, 0, 0]])
    [r] = relax_structures([cu], EMT(), FAST)
    pot = load_potential(EMT())
    assert r.status == "converged" and r.potential == pot.name == "EMT" and not pot.batched
    assert r.structure.lattice.a == pytest.approx(3.59, abs=0.02)  # EMT's fcc Cu
    assert detect_space_group(r.structure, 1e-3) == 225


def test_scipy_logm_accuracy_noise_is_silenced_but_real_inaccuracy_warns():
    """The Fréchet cell filter's matrix logarithm makes scipy warn at every step about an error
    estimate near 1e-13 (hundreds of stderr lines per relaxation); only estimates >= 1e-6 pass."""
    import warnings

    from ase.calculators.emt import EMT

    class NoisyEMT(EMT):
        def calculate(self, *args, **kwargs):
            warnings.warn("logm result may be inaccurate, approximate err = 5.419157186484621e-13", RuntimeWarning)
            warnings.warn("logm result may be inaccurate, approximate err = 2.5e-03", RuntimeWarning)
            super().calculate(*args, **kwargs)

    cu = Structure.from_spacegroup(225, Lattice.cubic(3.8), ["Cu"], [[0, 0, 0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [r] = relax_structures([cu], NoisyEMT(), FAST)
    messages = [str(w.message) for w in caught if "logm" in str(w.message)]
    assert r.status == "converged" and messages and all(m.endswith("2.5e-03") for m in messages)


def test_non_convergence_is_reported_and_strict_raises_one_line(chgnet):
    s = perovskite(4.4)
    [r] = relax_structures([s], chgnet, RelaxSettings(max_steps=1))
    assert r.status == "not_converged" and r.relaxed and r.steps == 1
    assert "did not converge in 1 steps" in r.message
    assert detect_space_group(r.structure, 1e-3) == 221
    s.properties = {"name": "sto-stretched"}
    with pytest.raises(RelaxError, match=r"^sto-stretched: relaxation not converged: did not converge") as err:
        relax_structures([s], chgnet, RelaxSettings(max_steps=1), strict=True)
    assert "\n" not in str(err.value)


def test_lost_group_and_exploded_cell_keep_the_unrelaxed_structure(chgnet):
    # rock salt that claims Pm-3m: FixSymmetry keeps Fm-3m, which is not the group requested
    s = rock_salt(5.5)
    s.properties = {"space_group": 221}
    [r] = relax_structures([s], chgnet, RelaxSettings(max_steps=3))
    assert r.status == "lost_group" and not r.relaxed and "225" in r.message
    assert r.structure.lattice.abc == pytest.approx(s.lattice.abc)
    assert r.energy_per_atom == r.energy_before
    # a volume bound the relaxation must break
    [r] = relax_structures([perovskite(4.4)], chgnet, RelaxSettings(max_volume_ratio=1.01, max_steps=50))
    assert r.status == "exploded" and not r.relaxed and "volume changed" in r.message
    assert r.structure.lattice.a == pytest.approx(4.4)


@pytest.mark.parametrize("bad, message", [
    ("nope", "unknown potential 'nope'"),
    ("mace", "needs the mace-torch package"),
    (42, "potential must be a name"),
])
def test_bad_potentials_are_value_errors(bad, message):
    import importlib.util

    if bad == "mace" and importlib.util.find_spec("mace") is not None:
        pytest.skip("mace is installed here")
    with pytest.raises(ValueError, match=message):
        load_potential(bad)


@pytest.mark.parametrize("kwargs", [{"fmax": 0}, {"max_steps": -1}, {"optimizer": "SGD"}, {"cell_filter": "x"},
                                    {"symprec": float("nan")}, {"max_volume_ratio": 1.0}])
def test_bad_settings_name_the_value(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RelaxSettings(**kwargs)


def test_ranking_orders_by_the_energies_it_reports(chgnet):
    candidates = [perovskite(4.6), perovskite(3.95), rock_salt(5.0), perovskite(4.2)]
    ranked = relax_and_rank([s.copy() for s in candidates], relax=False, rank=True, potential=chgnet)
    energies = [s.properties["energy_per_atom"] for s in ranked]
    assert energies == sorted(energies) and [s.properties["energy_rank"] for s in ranked] == [1, 2, 3, 4]
    # each reported energy is CHGNet's on that very structure
    again = single_point_energies([s.copy() for s in ranked], chgnet)
    assert np.allclose(energies, again, atol=1e-5)
    # missing energies go last, input order kept among them
    a, b, c = perovskite(4.0), perovskite(4.1), perovskite(4.2)
    a.properties, b.properties, c.properties = {"energy_per_atom": None}, {"energy_per_atom": -1.0}, {}
    assert rank_by_energy([a, b, c]) == [b, a, c]


def test_relax_then_rank_uses_the_relaxed_energies(chgnet):
    ranked = relax_and_rank([perovskite(4.3), rock_salt(5.4)], relax=True, rank=True, potential=chgnet, settings=FAST)
    energies = [s.properties["energy_per_atom"] for s in ranked]
    assert energies == sorted(energies)
    assert all(s.properties["relax"]["energy_after"] == pytest.approx(e) for s, e in zip(ranked, energies))
    assert all(math.isfinite(e) for e in energies)


def test_relaxation_leaves_spglib_error_mode_as_it_was(chgnet, monkeypatch):
    """ASE's FixSymmetry sets SPGLIB_OLD_ERROR_HANDLING=false and leaves it set; after a relaxation
    our own spglib calls must still return None on failure (found as order-dependent test failures)."""
    import os

    import spglib

    monkeypatch.delenv("SPGLIB_OLD_ERROR_HANDLING", raising=False)
    relax_structures([rock_salt(5.6)], chgnet, FAST)
    assert "SPGLIB_OLD_ERROR_HANDLING" not in os.environ
    clash = ([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], [[0, 0, 0], [0, 0, 1e-6]], [1, 1])
    assert spglib.get_symmetry_dataset(clash) is None  # too-close atoms: None, not an exception
