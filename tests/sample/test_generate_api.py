"""DiffCSPPP.generate and `diffcsp-pp generate` on a tiny untrained ab initio model."""

import json

import pytest

from diffcsp_pp import SamplerConfig, jobs
from diffcsp_pp.api import DiffCSPPP
from diffcsp_pp.cli.main import main
from diffcsp_pp.data.outputs import records
from diffcsp_pp.symmetry.analyze import detect_space_group
from tests.conftest import tiny_run_dir

STATS = {"221:1a,1b,3c": 3, "221:O:3c,Sr:1a,Ti:1b": 3, "225:4a,4b": 1}


@pytest.fixture()
def gen_dir(tmp_path):
    """An untrained tiny ab initio model: for the mechanics (its cells are not physical)."""
    return tiny_run_dir(tmp_path / "gen", task="gen", stats=STATS)


@pytest.fixture(scope="module")
def bundled_gen():
    """The bundled mp20-gen model: trained, so its crystals are physical and keep their group."""
    return DiffCSPPP.load("mp20-gen")


def test_generate_keeps_space_group_and_reports_pattern(bundled_gen):
    m = bundled_gen
    out = m.generate(3, space_group=225, seed=3, sampler=SamplerConfig(steps=10))
    assert len(out) == 3
    for s in out:
        assert s.properties["space_group"] == 225
        assert detect_space_group(s, 1e-3) == 225 == s.properties["detected_space_group"]
        tokens = s.properties["wyckoff"].split()
        assert sum(int(tok.split(":")[1][:-1]) for tok in tokens) == len(s)  # multiplicities add up
    again = m.generate(3, space_group=225, seed=3, sampler=SamplerConfig(steps=10))
    assert [s.composition for s in again] == [s.composition for s in out]
    assert all(a.lattice.abc == pytest.approx(b.lattice.abc) for a, b in zip(out, again))


def test_generate_with_explicit_pattern_and_drawn_groups(bundled_gen):
    (s,) = bundled_gen.generate(1, space_group=62, wyckoff="4c 4c 8d", seed=0, sampler=SamplerConfig(steps=10))
    assert len(s) == 16 and detect_space_group(s, 1e-3) == 62
    drawn = bundled_gen.generate(3, seed=1, sampler=SamplerConfig(steps=10))  # groups drawn from the training distribution
    assert all(detect_space_group(s, 1e-3) == s.properties["space_group"] for s in drawn)


def test_generate_unseen_group_uses_random_patterns(gen_dir):
    m = DiffCSPPP.load(gen_dir)
    plan = m.generation_plan(3, 139, 0)  # 139 is not in the tiny model's statistics
    assert {sg for sg, _ in plan} == {139}
    assert len(jobs.generate(m.engine(SamplerConfig(steps=2)), plan[:1], seed=0)) == 1


@pytest.mark.parametrize("kwargs,message", [
    ({"n": 0}, "n must be"), ({"n": 2, "space_group": 231}, "231"),
    ({"n": 1, "wyckoff": "1a"}, "needs a space group"), ({"n": 1, "space_group": 221, "wyckoff": "1a 1a"}, "only one orbit"),
    ({"n": 1, "space_group": 221, "wyckoff": "9z"}, "9z"),
])
def test_generate_bad_input(gen_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffCSPPP.load(gen_dir).generate(**kwargs)


def test_csp_model_cannot_generate_and_gen_cannot_predict(tmp_path, gen_dir):
    csp = DiffCSPPP.load(tiny_run_dir(tmp_path / "csp"))
    with pytest.raises(ValueError, match="gen"):
        csp.generate(1, space_group=221)
    with pytest.raises(ValueError, match="CSP model"):
        DiffCSPPP.load(gen_dir).predict("SrTiO3", space_group=221)


def test_cli_generate_incremental(tmp_path, gen_dir, capsys):
    out = tmp_path / "out"
    args = ["generate", "-n", "5", "--model", str(gen_dir), "--steps", "3", "--batch-size", "2", "--seed", "4",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 5 and manifest["requested_space_group_rate"] is not None  # untrained: any rate
    files = {e["name"]: out / e["file"] for e in records(out)}
    assert len(files) == 5 and all(f.is_file() for f in files.values())
    first = files["gen_000000"].read_text()
    assert "_symmetry_space_group_name_H-M   'P 1'" not in first
    # a lost batch is regenerated identically, the others are skipped
    lost = files["gen_000003"].read_text()
    files["gen_000003"].unlink()
    assert main(args) == 0
    again = json.loads((out / "manifest.json").read_text())
    found = {e["name"]: out / e["file"] for e in records(out)}
    assert again["count"] == 5 and sorted(found) == [f"gen_{i:06d}" for i in range(5)]
    assert found["gen_000003"].read_text() == lost  # the same crystal again
    assert main(["generate", "-n", "2", "--model", str(gen_dir), "--wyckoff", "1a", "--out", str(tmp_path / "x")]) == 2
    assert "--wyckoff needs --space-group" in capsys.readouterr().err


def test_generate_resamples_crystals_whose_types_raise_the_group(bundled_gen):
    """Fm-3m with 4a + 4b: one element on both makes a simple cubic lattice (Pm-3m); such draws are
    resampled, so every output keeps 225."""
    out = bundled_gen.generate(4, space_group=225, wyckoff="4a 4b", seed=0, sampler=SamplerConfig(steps=10))
    assert [detect_space_group(s, 1e-3) for s in out] == [225] * 4
    assert all(s.properties["attempts"] >= 1 for s in out)
    for s in out:
        a, b = (tok.split(":")[0] for tok in s.properties["wyckoff"].split())
        assert a != b


def test_generate_many_in_worker_processes_equals_threads(gen_dir):
    """Ab initio sampling (types diffused too) in worker processes gives the threads' crystals."""
    from diffcsp_pp.sample import runner

    m = DiffCSPPP.load(gen_dir)
    plan = m.generation_plan(4, 221, 0)
    sampler = SamplerConfig(steps=3, retries=0)
    threads = jobs.generate(m.engine(sampler), plan, seed=2)
    try:
        procs = jobs.generate(m.engine(sampler.replace(parallel="processes")), plan, seed=2)
    finally:
        runner.shutdown_pool()
    assert [s.composition for s in procs] == [s.composition for s in threads]
    assert [s.frac_coords.tolist() for s in procs] == [s.frac_coords.tolist() for s in threads]
