"""Bad input, table-driven: every case ends in the expected exit status and one readable line (CLI),
or a ValueError / FileNotFoundError naming the bad value (API), never a traceback or a crash.

The CLI cases run ``main()`` in this process (fast; an uncaught exception fails the test as a
traceback would); the error boundary's own exits (internal error, out of memory, interrupt,
broken pipe) are checked by making a command raise them.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from diffcsp_pp.cli import main as cli_main
from tests.conftest import FIXTURES, tiny_run_dir

PEROV = FIXTURES / "perov_5_test.csv.gz"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Model folders (good and tampered) and input files shared by the table's cases."""
    root = tmp_path_factory.mktemp("fuzz")
    csp = tiny_run_dir(root / "csp", stats={"221:1a,1b,3c": 3, "221:O:3c,Sr:1a,Ti:1b": 3})
    gen = tiny_run_dir(root / "gen", task="gen", stats={"225:4a,4b": 5})
    (root / "afile").write_text("not a folder")
    (root / "empty.csv").write_text("material_id,cif\n")
    (root / "nocif.csv").write_text("material_id,name\nx,NaCl\n")
    (root / "formulas.csv").write_text("material_id,formula\nx,NaCl\n")
    (root / "bad_rows.csv").write_text('material_id,cif\na,\nb,"data_x\n_cell_length_a 3\n"\n')
    (root / "garbage.cif").write_text("data_x\nloop_\n_atom_site_label\n")
    # tampered model folders: each a copy of the good one with one file broken
    for name, file, text in [("cfg_list", "config.json", "[1, 2, 3]"), ("cfg_bad", "config.json", "{not json"),
                             ("cfg_types", "config.json", None), ("index_garbage", "template_index.npz", "garbage"),
                             ("weights_garbage", "model.safetensors", "garbage")]:
        folder = tiny_run_dir(root / name)
        if text is None:  # a config whose model section has the wrong types
            cfg = json.loads((folder / "config.json").read_text())
            cfg["model"]["hidden"] = "wide"
            text = json.dumps(cfg)
        (folder / file).write_text(text)
    old = tiny_run_dir(root / "card_bad")  # an old folder (no "sampler") whose card would set defaults
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("sampler", None)
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "card.json").write_text(json.dumps({"step_lr": "fast"}))
    return {"ROOT": root, "CSP": csp, "GEN": gen, "PEROV": PEROV}


def _argv(template: list[str], paths: dict, out: Path) -> list[str]:
    argv = []
    for a in template:
        for key in ("ROOT", "CSP", "GEN", "PEROV"):
            a = a.replace(key, str(paths[key]))
        argv.append(a.replace("OUT", str(out)))
    return argv


F = ["--formula", "NaCl", "--space-group", "225"]
P = ["predict", "--model", "CSP", "--steps", "2", "--quiet"]

# (argv, exit status, message fragment): bad input the CLI must refuse in one line
CASES = [
    # output folder
    ([*P, *F, "--out", ""], 2, "must name a folder"),
    ([*P, *F, "--out", "ROOT/afile"], 2, "exists and is not a folder"),
    ([*P, *F, "--out", "ROOT/afile/sub"], 2, "is a file"),
    (["preprocess", "PEROV", "--out", "ROOT/afile"], 2, "exists and is not a folder"),
    (["evaluate", "csp", "--pred", "ROOT", "--ref", "PEROV", "--out", "ROOT"], 2, "is a folder"),
    # formulas
    ([*P, "--formula", "Og2", "--space-group", "1", "--out", "OUT"], 2, "Og (Z = 118)"),
    ([*P, "--formula", "Md", "--space-group", "1", "--out", "OUT"], 2, "Md (Z = 101)"),
    ([*P, "--formula", "Xx2", "--space-group", "1", "--out", "OUT"], 2, "unknown element 'Xx'"),
    ([*P, "--formula", "NaCl;rm -rf", "--space-group", "1", "--out", "OUT"], 2, "malformed formula"),
    ([*P, "--formula", "", "--space-group", "1", "--out", "OUT"], 2, "malformed formula"),
    ([*P, "--formula", "Na0Cl", "--space-group", "1", "--out", "OUT"], 2, "must be >= 1"),
    ([*P, "--formula", "Fe0.3333O", "--space-group", "1", "--out", "OUT"], 2, "makes whole"),
    ([*P, "--formula", "C1e400", "--space-group", "1", "--out", "OUT"], 2, "finite"),
    ([*P, "--formula", "C" * 300, "--space-group", "1", "--out", "OUT"], 2, "formula_chars"),
    # bounded resources (and the flag that raises a bound)
    ([*P, "--formula", "C5000", "--space-group", "227", "--out", "OUT"], 2, "atoms_per_cell = 500"),
    ([*P, "--formula", "C1000000", "--space-group", "227", "--out", "OUT"], 2, "atoms_per_cell"),
    ([*P, "--formula", "C600", "--space-group", "1", "--out", "OUT", "--raise-limit", "atoms_per_cell=550"], 2,
     "atoms_per_cell = 550"),
    ([*P, *F, "-n", str(10**9), "--out", "OUT"], 2, "structures = 100000"),
    ([*P, "--formula", "NaCl", "--top-k", str(10**7), "--out", "OUT"], 2, "--top-k = 10000000"),
    ([*P, "--csv", "PEROV", "--batch-size", str(10**6), "--out", "OUT"], 2, "batch_size"),
    ([*P, *F, "--out", "OUT", "--raise-limit", "bogus=3"], 2, "NAME=VALUE"),
    ([*P, *F, "--out", "OUT", "--raise-limit", "workers=many"], 2, "needs an integer"),
    ([*P, *F, "--out", "OUT", "--raise-limit", "workers=0"], 2, "positive integer"),
    (["preprocess", "PEROV", "--out", "OUT", "--workers", "10000"], 2, "workers = 10000"),
    (["evaluate", "csp", "--pred", "ROOT", "--ref", "PEROV", "--out", "OUT/m.json", "--workers", "999"], 2,
     "workers = 999"),
    (["train", "--train", "PEROV", "--val", "PEROV", "--out", "OUT", "--workers", "500"], 2, "workers = 500"),
    (["generate", "--model", "GEN", "-n", "1", "--space-group", "225", "--wyckoff", " ".join(["192l"] * 6),
      "--out", "OUT"], 2, "atoms_per_cell"),
    # space groups, Wyckoff, steps, seeds
    ([*P, "--formula", "NaCl", "--space-group", "0", "--out", "OUT"], 2, "1-230"),
    ([*P, "--formula", "NaCl", "--space-group", "231", "--out", "OUT"], 2, "1-230"),
    ([*P, "--formula", "NaCl", "--space-group", "x", "--out", "OUT"], "usage", "invalid int"),
    ([*P, *F, "--wyckoff", "Na:4a Cl:4a", "--out", "OUT"], 2, "only one orbit"),
    ([*P, *F, "--wyckoff", "Na4a", "--out", "OUT"], 2, "malformed Wyckoff"),
    ([*P, *F, "--wyckoff", "Na:4a Cl:4b O:8c", "--out", "OUT"], 2, "does not add up"),
    (["predict", "--model", "CSP", *F, "--steps", "100000", "--out", "OUT"], 2, "T - 1 = 999"),
    (["predict", "--model", "CSP", *F, "--steps", "0", "--out", "OUT"], "usage", "must be >= 1"),
    ([*P, *F, "--seed", "-1", "--out", "OUT"], 2, "non-negative"),
    (["generate", "--model", "GEN", "-n", "1", "--wyckoff", "4a", "--out", "OUT"], 2, "--wyckoff needs"),
    (["generate", "--model", "GEN", "-n", "1", "--space-group", "225", "--wyckoff", "4a 4a", "--out", "OUT"], 2,
     "only one orbit"),
    (["generate", "--model", "CSP", "-n", "1", "--out", "OUT"], 2, "generate needs an ab initio"),
    (["predict", "--model", "GEN", *F, "--out", "OUT"], 2, "predict needs a CSP model"),
    (["symmetry", str(FIXTURES / "overlapping_sites_prediction.cif"), "--symprec", "nan"], "usage", "must be > 0"),
    (["symmetry", str(FIXTURES / "overlapping_sites_prediction.cif"), "--symprec", "-1"], "usage", "must be > 0"),
    (["symmetry", str(FIXTURES / "overlapping_sites_prediction.cif"), "--symprec", "inf"], "usage", "finite"),
    (["symmetry", "ROOT/garbage.cif"], 2, "cannot read a structure"),
    # models and model folders
    ([*P[:1], "--model", "ROOT/nope", *F, "--out", "OUT"], 2, "no model at"),
    (["predict", "--model", "ROOT/cfg_list", *F, "--out", "OUT"], 2, "expected a JSON object"),
    (["predict", "--model", "ROOT/cfg_bad", *F, "--out", "OUT"], 2, "not a valid run config"),
    (["predict", "--model", "ROOT/cfg_types", *F, "--out", "OUT"], 2, "not a valid run config"),
    (["predict", "--model", "ROOT/weights_garbage", *F, "--out", "OUT"], 2, "cannot load the model"),
    (["predict", "--model", "ROOT/index_garbage", "--formula", "NaCl", "--out", "OUT"], 2,
     "cannot read the template index"),
    (["predict", "--model", "ROOT/card_bad", *F, "--out", "OUT"], 2, "invalid sampler values"),
    # data files
    ([*P, "--csv", "ROOT/missing.csv", "--out", "OUT"], 2, "no such file"),
    ([*P, "--csv", "ROOT/nocif.csv", "--out", "OUT"], 2, "no 'cif' column"),
    ([*P, "--csv", "ROOT/nocif.csv", "--from-formula", "--out", "OUT"], 2, "neither a 'cif' nor a 'formula' column"),
    ([*P, "--csv", "ROOT/formulas.csv", "--out", "OUT"], 2, "template_index.npz is missing"),
    ([*P, "--csv", "ROOT/bad_rows.csv", "--out", "OUT"], 2, "no row of"),
    (["preprocess", "ROOT/bad_rows.csv", "--out", "OUT"], 2, "no crystal of"),
    (["preprocess", "ROOT/empty.csv", "--out", "OUT"], 2, "no crystal of"),
    (["preprocess", "ROOT/afile", "--out", "OUT"], 2, "expected a .csv"),
    # training
    (["train", "--resume", "--out", "OUT"], 2, "nothing to resume"),
    (["train", "--train", "PEROV", "--out", "OUT"], 2, "--train and --val are required"),
]


#: refusals found once the run has started (its output folder may exist, with no structure in it)
_LATE = ("no row of", "no crystal of", "no 'cif' column", "cannot read the template index")


@pytest.mark.parametrize("argv, status, message", CASES, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_cli_input_is_one_line(argv, status, message, paths, tmp_path, capsys, monkeypatch):
    """``status`` "usage": argparse refuses the flag (exit 2 with its usage line)."""
    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(tmp_path / "cache"))
    if argv[0] == "train" and "--accelerator" not in argv:
        argv = [*argv, "--accelerator", "cpu"]
    argv = _argv(argv, paths, tmp_path / "out")
    if status == "usage":
        with pytest.raises(SystemExit) as info:
            cli_main.main(argv)
        assert info.value.code == 2
    else:
        assert cli_main.main(argv) == status
    err = capsys.readouterr().err
    assert message in err, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    if message not in _LATE:  # refused before any work: no output folder was made
        assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*.cif"))


def test_cache_under_a_file_is_one_line(paths, tmp_path, capsys, monkeypatch):
    """DIFFCSP_PP_CACHE where no folder can be made: one line naming the variable."""
    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(paths["ROOT"] / "afile" / "cache"))
    code = cli_main.main(["predict", "--model", str(paths["CSP"]), "--csv", str(PEROV), "--limit", "1",
                          "--steps", "2", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "DIFFCSP_PP_CACHE" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("raised, status, fragment", [
    (RuntimeError("boom"), 1, "internal error (RuntimeError): boom"),
    (MemoryError(), 2, "out of memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(28, "No space left on device"), 2, "No space left on device"),
    (RecursionError("maximum recursion depth exceeded"), 1, "internal error (RecursionError)"),
])
def test_error_boundary(raised, status, fragment, capsys, monkeypatch):
    def command(args):
        raise raised

    monkeypatch.setattr(cli_main, "cmd_datasets", command)
    monkeypatch.delenv("DIFFCSP_PP_DEBUG", raising=False)
    assert cli_main.main(["datasets"]) == status
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_broken_pipe_is_quiet(capsys, monkeypatch):
    def command(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_main, "cmd_datasets", command)
    monkeypatch.setattr(cli_main, "_broken_pipe", lambda: cli_main.EXIT_BROKEN_PIPE)  # keep pytest's stdout
    assert cli_main.main(["datasets"]) == 141
    assert capsys.readouterr().err == ""


def test_predict_csv_reports_every_skipped_row(paths, tmp_path, monkeypatch, capsys):
    """A good perovskite and three bad rows: the good one is predicted, each bad row is listed
    with its reason in skipped.jsonl and counted on stdout."""
    monkeypatch.setenv("DIFFCSP_PP_CACHE", str(tmp_path / "cache"))
    import pandas as pd

    from diffcsp_pp.data.sources import parse_cif

    good = pd.read_csv(PEROV).head(1)
    heavy = parse_cif(good.cif[0])
    heavy.replace_species({heavy[0].specie: "Og"})  # Z = 118: beyond the network's elements
    bad = pd.DataFrame({"material_id": ["empty", "garbage", "og"],
                        "cif": ["", "data_x\n_cell_length_a 3\n", heavy.to(fmt="cif")]})
    path = tmp_path / "mixed.csv.gz"
    with gzip.open(path, "wt") as f:
        pd.concat([good, bad]).to_csv(f, index=False)
    out = tmp_path / "o"
    code = cli_main.main(["predict", "--model", str(paths["CSP"]), "--csv", str(path), "--steps", "2",
                          "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    rows = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {r["material_id"] for r in rows} == {"empty", "garbage", "og"}
    assert all(r["reason"] and r["row"] is not None for r in rows)
    assert "3 row(s)" in printed and "skipped.jsonl" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 1


def test_api_refuses_bad_values(paths):
    """The API raises ValueError / FileNotFoundError naming the bad value, before sampling."""
    from diffcsp_pp import DiffCSPPP, SamplerConfig
    from diffcsp_pp.policy import raised_limits
    from diffcsp_pp.symmetry.analyze import analyze
    from tests.conftest import load_fixture_structures

    with pytest.raises(FileNotFoundError, match="nope"):
        DiffCSPPP.load(paths["ROOT"] / "nope")
    model = DiffCSPPP.load(paths["CSP"])
    cheap = SamplerConfig(steps=2)
    table = [
        (lambda: model.predict("Og2", 1, sampler=cheap), "Og"),
        (lambda: model.predict("NaCl", True, sampler=cheap), "True"),
        (lambda: model.predict("C5000", 227, sampler=cheap), "atoms_per_cell"),
        (lambda: model.predict("NaCl", 225, n=10**9, sampler=cheap), "structures"),
        (lambda: model.predict("NaCl", 225, sampler=SamplerConfig(steps=5000)), "T - 1"),
        (lambda: SamplerConfig(step_lr=math.nan), "step_lr"),
        (lambda: SamplerConfig(step_lr=math.inf), "step_lr"),
        (lambda: SamplerConfig(workers=10_000), "workers"),
        (lambda: model.predict("Ca(OH)2x", 1, sampler=cheap), "malformed formula"),
        (lambda: model.generate(1), "generate needs"),
        (lambda: model.predict_from_formula("NaCl", top_k=10**6, sampler=cheap), "structures"),
        (lambda: analyze(load_fixture_structures("perov_5_test.csv.gz")[0][1], symprec=math.nan), "symprec"),
        (lambda: analyze(load_fixture_structures("perov_5_test.csv.gz")[0][1], symprec=-1), "symprec"),
    ]
    for call, fragment in table:
        with pytest.raises(ValueError, match=None) as info:
            call()
        assert fragment in str(info.value), (fragment, info.value)
    with raised_limits(atoms_per_cell=6000), pytest.raises(ValueError, match="T - 1"):
        model.predict("C5000", 227, sampler=SamplerConfig(steps=5000))  # the raised bound lets it reach steps


def test_one_atom_cells_sample(paths):
    """A one-atom conventional cell has no atom pairs (only its self-loop): it once crashed the
    network's Fourier features. CSP (Po in Pm-3m) and ab initio (1a of Pm-3m) now sample. (One or two
    atoms in P1 always have an inversion centre, i.e. P-1, so H in P1 is drawn with three atoms.)"""
    from diffcsp_pp import DiffCSPPP, SamplerConfig

    cheap = SamplerConfig(steps=2, retries=0)
    csp = DiffCSPPP.load(paths["CSP"])
    (s,) = csp.predict("Po", 221, seed=0, sampler=cheap)
    assert len(s) == 1 and s[0].specie.symbol == "Po"
    (s,) = csp.predict("H", 1, seed=0, sampler=cheap)
    assert len(s) == 3 and s.get_space_group_info(symprec=1e-3)[1] == 1
    gen = DiffCSPPP.load(paths["GEN"])
    (s,) = gen.generate(1, space_group=221, wyckoff="1a", seed=0, sampler=cheap)
    assert len(s) == 1
