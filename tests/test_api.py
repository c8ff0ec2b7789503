"""DiffCSPPP: loading, Wyckoff handling, formula units, outputs with their space group, clean errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import diffcsp_pp
from diffcsp_pp import DiffCSPPP, Provenance, SamplerConfig
from diffcsp_pp.api import parse_wyckoff
from diffcsp_pp.symmetry import project_k
from tests.conftest import tiny_run_dir


class _OracleLattice(torch.nn.Module):
    """The loaded (untrained) network, with its lattice output replaced by the exact noise of a fixed
    clean lattice of each crystal's family: an untrained network cannot denoise k, and the API
    plumbing, not the network, is under test here."""

    def __init__(self, net, sched):
        super().__init__()
        self.net, self.sched, self.config = net, sched, net.config

    def parameters(self, recurse=True):
        return self.net.parameters(recurse)

    def forward(self, batch, k_t, x_t, t, a):
        out = self.net(batch, k_t, x_t, t, a)
        k0 = project_k(torch.tensor([0.05, -0.03, 0.02, 0.1, -0.05, 2.8], dtype=k_t.dtype).expand_as(k_t), batch.space_group)
        ab = self.sched.alpha_bars[t].to(k_t.dtype)[:, None]
        out.pred_eps_k = (k_t - ab.sqrt() * k0) / (1 - ab).sqrt()
        return out


def _load(path):
    from diffcsp_pp.diffusion.process import Schedules

    m = DiffCSPPP.load(path)
    m.model = _OracleLattice(m.model, Schedules(m.config.diffusion))
    return m


def _run(tmp_path, task="csp", stats=None):
    return tiny_run_dir(tmp_path, task, stats)


def test_predict_reduced_formula_and_explicit_wyckoff(tmp_path):
    m = _load(_run(tmp_path, stats={"221:1a,1b,3c": 10}))
    out = m.predict("SrTiO3", 221, n=2, seed=0, sampler=SamplerConfig(steps=10))
    assert len(out) == 2
    for s in out:
        assert s.composition.reduced_formula == "SrTiO3" and len(s) == 5
        assert s.properties["space_group"] == s.properties["detected_space_group"] == 221
        labels = sorted(w.split(":")[1] for w in s.properties["wyckoff"].split())
        assert labels == ["1a", "1b", "3c"]  # the pattern frequent in training ranks first
        # the provenance record is the whole of properties
        assert set(s.properties) == {"space_group", "seed", "detected_space_group", "attempts", "wyckoff", "formula_units"}
        assert s.properties == Provenance(**s.properties).as_dict()
    again = m.predict("SrTiO3", 221, n=2, seed=0, sampler=SamplerConfig(steps=10))
    assert [s.frac_coords.tolist() for s in out] == [s.frac_coords.tolist() for s in again]
    s = m.predict("SrTiO3", 221, wyckoff="Sr:1b Ti:1a O:3d", seed=1, sampler=SamplerConfig(steps=5))[0]
    assert s.properties["wyckoff"] == "Sr:1b Ti:1a O:3d"
    # NaCl in Fm-3m needs 4 formula units
    nacl = m.predict("NaCl", 225, seed=0, sampler=SamplerConfig(steps=5))[0]
    assert len(nacl) == 8 and nacl.properties["formula_units"] == 4 and nacl.properties["detected_space_group"] == 225
    # a full-cell formula is taken as given
    assert len(m.predict("Sr2Ti2O6", 123, seed=0, sampler=SamplerConfig(steps=5))[0]) == 10
    many = m.predict(["SrTiO3", "NaCl"], [221, 225], n=1, seed=3, sampler=SamplerConfig(steps=5))
    assert [len(x) for x in many] == [1, 1] and len(many[1][0]) == 8


def test_assignments_that_cannot_have_the_group_are_never_chosen(tmp_path):
    """MoS2 in P6_3/mmc: Mo:2a S:2c S:2d always has the translation (0, 0, 1/2) (P6/mmm). Even where
    its species-free pattern is the most frequent in training, it is not a candidate, and given
    explicitly it is a ValueError naming it."""
    m = DiffCSPPP.load(_run(tmp_path, stats={"194:2a,2c,2d": 50, "194:2c,4f": 1}))
    chosen = [sorted(a) for a, _ in m.templates_for("MoS2", 194, limit=20)]
    never = [sorted([("Mo", mo), *(("S", s) for s in others)])
             for mo in ("2a", "2b") for others in (("2c", "2d"), ("4e",))]  # all four keep (0, 0, 1/2)
    assert len(chosen) == 20 - 4 and not any(a in never for a in chosen)
    # the frequent pattern still ranks first, with Mo where the pattern can have its group
    assert chosen[0] in ([("Mo", "2c"), ("S", "2a"), ("S", "2d")], [("Mo", "2d"), ("S", "2a"), ("S", "2c")])
    with pytest.raises(ValueError, match="Mo:2a S:2c S:2d.*cannot have space group 194"):
        m.templates_for("MoS2", 194, wyckoff="Mo:2a S:2c S:2d")


def test_old_names_work_with_a_deprecation_warning(tmp_path):
    """predict_many, the sampler keywords (steps=, precision=) and generate_many / _gen_plan keep
    working for one release, each with a DeprecationWarning, and give the new calls' structures."""
    m = _load(_run(tmp_path, stats={"221:1a,1b,3c": 10}))
    new = m.predict(["SrTiO3", "NaCl"], [221, 225], seed=3, sampler=SamplerConfig(steps=4))
    with pytest.warns(DeprecationWarning, match="predict_many"):
        old = m.predict_many(["SrTiO3", "NaCl"], [221, 225], seed=3, steps=4)
    assert [[s.frac_coords.tolist() for s in x] for x in old] == [[s.frac_coords.tolist() for s in x] for x in new]
    with pytest.warns(DeprecationWarning, match="steps="):
        (one,) = m.predict("SrTiO3", space_group=221, seed=3, steps=4)
    (same,) = m.predict("SrTiO3", 221, seed=3, sampler=SamplerConfig(steps=4))
    assert one.frac_coords.tolist() == same.frac_coords.tolist()
    gen = DiffCSPPP.load(_run(tmp_path / "gen", task="gen", stats={"221:1a,1b,3c": 10}))
    plan = gen._gen_plan(3, 221, 5, None)
    assert plan == gen.generation_plan(3, 221, 5)
    with pytest.warns(DeprecationWarning, match="generate_many"):
        old = gen.generate_many(plan, seed=5, steps=3)
    new = gen.generate(3, space_group=221, seed=5, sampler=SamplerConfig(steps=3))
    assert [s.frac_coords.tolist() for s in old] == [s.frac_coords.tolist() for s in new]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(formula="SrTiO3", space_group=None, wyckoff="Sr:1a Ti:1b O:3c"), "needs a space group"),
        (dict(formula="SrTiO3", space_group=0), "space group"),
        (dict(formula="SrTiO3", space_group=231), "space group"),
        (dict(formula="Xx", space_group=221), "unknown element"),
        (dict(formula="sr-ti", space_group=221), "malformed formula"),
        (dict(formula="SrTiO3", space_group=221, n=0), "n must be"),
        (dict(formula="SrTiO3", space_group=221, wyckoff="Sr:1z Ti:1b O:3c"), "no Wyckoff position"),
        (dict(formula="SrTiO3", space_group=221, wyckoff="Sr:1a Ti:1b O:3c O:3d"), "does not add up"),
        (dict(formula="SrTiO3", space_group=221, wyckoff="Sr-1a"), "malformed Wyckoff"),
        (dict(formula="Na2Cl2", space_group=225), "formula-unit multiples that fit: 4, 8"),
    ],
)
def test_bad_inputs(tmp_path, kwargs, message):
    m = _load(_run(tmp_path))
    with pytest.raises(ValueError, match=message):
        m.predict(**kwargs, sampler=SamplerConfig(steps=2))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model"):
        DiffCSPPP.load(tmp_path / "missing")
    from diffcsp_pp.api import BUNDLED

    missing = [n for n in BUNDLED if not (Path(diffcsp_pp.__file__).parent / "pretrained" / n / "model.safetensors").exists()]
    for name in missing:
        with pytest.raises(FileNotFoundError, match="not part of this release"):
            DiffCSPPP.load(name)
    gen = DiffCSPPP.load(_run(tmp_path, task="gen"))
    with pytest.raises(ValueError, match="generation model"):
        gen.predict("SrTiO3", space_group=221)


def test_parse_wyckoff():
    assert parse_wyckoff("Sr:1a Ti:1b O:3c") == [("Sr", "1a"), ("Ti", "1b"), ("O", "3c")]
    assert parse_wyckoff([("Sr", "a")]) == [("Sr", "a")]
    with pytest.raises(ValueError):
        parse_wyckoff("")


def test_seed_must_be_a_non_negative_integer(tmp_path):
    m = _load(_run(tmp_path))
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            m.predict("SrTiO3", 221, seed=bad, sampler=SamplerConfig(steps=2))
