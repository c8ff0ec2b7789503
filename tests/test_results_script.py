"""scripts/results.py: the whole-MP-20-test jobs run the user commands (with the device flags given)
and their section of docs/RESULTS.md is rendered between its own markers, nothing else touched."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mp20_test_jobs_are_user_commands_with_device_flags(results, tmp_path):
    table = results.jobs(Path("/data"), tmp_path, ("--accelerator", "gpu", "--devices", "1"), 16)
    predict, evaluate = table["mp20_test_csp"]
    assert predict[:3] == ["diffcsp-pp", "predict", "--csv"] and predict[3] == "/data/mp_20/test_full.csv.gz"
    assert predict[predict.index("--steps") + 1] == "100" and predict[-4:] == ["--accelerator", "gpu", "--devices", "1"]
    assert evaluate[:3] == ["diffcsp-pp", "evaluate", "csp"] and evaluate[evaluate.index("--workers") + 1] == "16"
    predict999 = table["mp20_test_csp_999"][0]
    assert predict999[predict999.index("--steps") + 1] == "999"
    generate = table["mp20_test_gen"][1]
    assert generate[:2] == ["diffcsp-pp", "generate"] and generate[generate.index("-n") + 1] == "10000"
    assert "--accelerator" in generate
    ev = table["mp20_test_gen"][2]
    assert ev[ev.index("--ref") + 1] == "/data/mp_20/test_full.csv.gz"
    assert ev[ev.index("--train") + 1].endswith("data/mp20/train.csv.gz")
    # the long jobs are not in the default list of ``run``
    assert not set(results.MP20_TEST_JOBS) & set(results.DEFAULT)
    # without flags the Perov-5 jobs are unchanged: predict then evaluate with 2 workers
    ev5 = results.jobs(Path("/data"), tmp_path)["perov5_csp"][1]
    assert ev5[ev5.index("--workers") + 1] == "2"


def test_mp20_test_section_renders_missing_and_measured_jobs(results, tmp_path):
    text = results.render_mp20_test(tmp_path)
    assert text.count("not run") == 4 and "run --only mp20_test_csp_999" in text
    job = tmp_path / "mp20_test_csp"
    (job / "structures").mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({
        "match_rate": 0.5, "rmse": 0.1, "match_rate_ungated": 0.52, "counts": {"rows": 9046}}))
    (job / "structures" / "manifest.json").write_text(json.dumps(
        {"layout": 2, "inputs": {"steps": 100}, "requested_space_group_rate": 1.0}))
    (job / "run.json").write_text(json.dumps({"steps": [{"command": "diffcsp-pp predict --csv x", "wall_s": 10.0},
                                                        {"command": "diffcsp-pp evaluate csp", "wall_s": 5.0}]}))
    text = results.render_mp20_test(tmp_path)
    assert text.count("not run") == 3
    assert "| 9046 | 100 | **50.00 %** / 0.1000 (ungated 52.00 %; requested group kept 100.00 %) | 10 s + 5 s |" in text
    # the model column: the hand-written label of a run older than recorded weights, then the weights' step
    assert "| CSP, ground-truth template | mp20-csp | 9046 |" in text
    (job / "label.txt").write_text("mp20-csp step 50,500 (as bundled then)\n")
    assert "| mp20-csp step 50,500 (as bundled then) | 9046 |" in results.render_mp20_test(tmp_path)
    (job / "structures" / "manifest.json").write_text(json.dumps(
        {"layout": 2, "inputs": {"steps": 100, "model": "/x/pretrained/mp20-csp"}, "requested_space_group_rate": 1.0,
         "weights": {"sha256": "ab" * 32, "global_step": 68500}}))
    assert "| mp20-csp step 68,500 | 9046 |" in results.render_mp20_test(tmp_path)
    # a generation run: its metrics, the recorded weights and both wall times
    gen = tmp_path / "mp20_test_gen"
    (gen / "structures").mkdir(parents=True)
    (gen / "structures" / "manifest.json").write_text(json.dumps(
        {"layout": 2, "inputs": {"model": "/x/pretrained/mp20-gen"}, "weights": {"sha256": "cd" * 32, "global_step": 34750}}))
    (gen / "metrics.json").write_text(json.dumps({
        "struct_valid": 0.995, "cov_recall": 0.9, "cov_precision": 0.91, "wdist_density": 0.25, "comp_valid": 0.8,
        "wdist_prop": 0.1, "wdist_num_elements": 0.7, "requested_space_group_rate": 1.0,
        "counts": {"generated": 10000, "reference": 9046}}))
    (gen / "run.json").write_text(json.dumps({"steps": [{"command": "split", "wall_s": 1.0},
                                                       {"command": "generate", "wall_s": 3000.0},
                                                       {"command": "evaluate", "wall_s": 2000.0}]}))
    line = next(x for x in results.render_mp20_test(tmp_path).splitlines() if x.startswith("| generation"))
    assert line.startswith("| generation, 10,000 crystals | mp20-gen step 34,750 | reference 9,046 | 100 | "
                           "struct. valid **99.50 %**, COV-R **90.00 %**, COV-P **91.00 %**, d_ρ **0.2500**, requested "
                           "group kept 100.00 %; comp. valid 80.00 %, d_E 0.1000, d_elem 0.7000 | 3000 s + 2000 s |")


def test_write_section_replaces_only_between_its_markers(results, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("head\n<!-- a -->\nold\n<!-- b -->\ntail <!-- results:begin --> kept\n")
    results.write_section(doc, "<!-- a -->", "<!-- b -->", "\nnew\n")
    assert doc.read_text() == "head\n<!-- a -->\nnew\n<!-- b -->\ntail <!-- results:begin --> kept\n"
    with pytest.raises(SystemExit, match="lacks the markers"):
        results.write_section(doc, "<!-- x -->", "<!-- y -->", "")
    # the repository's RESULTS.md has the section's markers
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    assert "<!-- mp20-test:begin -->" in text and "<!-- mp20-test:end -->" in text


def test_formula_only_job_runs_the_user_commands_and_renders_top1_and_best_of_k(results, tmp_path):
    from pymatgen.core import Lattice, Structure

    from diffcsp_pp.sample.writer import PredictionWriter

    predict, evaluate = results.jobs(Path("/data"), tmp_path, (), 4)["mp20_test_cspml"]
    assert predict[:3] == ["diffcsp-pp", "predict", "--csv"] and "--from-formula" in predict
    assert predict[predict.index("--top-k") + 1] == "5" and predict[predict.index("--model") + 1] == "mp20-csp"
    assert evaluate[:3] == ["diffcsp-pp", "evaluate", "csp"] and evaluate[evaluate.index("--workers") + 1] == "4"
    job = tmp_path / "mp20_test_cspml"
    rock = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with PredictionWriter(job / "structures", {"top_k": 5, "steps": 100}, shard="r00000") as w:
        w.add((f"x_rank{k}", rock, {"material_id": "x", "rank": k, "source": "template", "diff_ratio": 0.0,
                                    "space_group": 221, "detected_space_group": 221}) for k in (1, 2))
    first_k = {"1": {"match_rate": 0.6, "rmse": 0.03}, "5": {"match_rate": 0.8, "rmse": 0.04}}
    (job / "metrics.json").write_text(json.dumps({"match_rate": 0.8, "rmse": 0.04, "match_rate_ungated": 0.85,
                                                  "counts": {"rows": 9046}, "first_k": first_k}))
    (job / "run.json").write_text(json.dumps({"steps": [{"command": "diffcsp-pp predict --csv x", "wall_s": 20.0},
                                                        {"command": "diffcsp-pp evaluate csp", "wall_s": 7.0}]}))
    text = results.render_mp20_test(tmp_path)
    line = next(x for x in text.splitlines() if "formula alone" in x)
    assert "| 9046 | templates as retrieved (diff ratio 0) | top-1 **60.00 %** / 0.0300; best of 5 80.00 % / 0.0400 " \
           "| 20 s + 7 s |" in line


def test_the_user_command_is_found_beside_the_interpreter_when_not_on_path(results, monkeypatch):
    import shutil
    import sys

    assert results._executable(["python", "x.py"]) == ["python", "x.py"]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    beside = Path(sys.executable).parent / "diffcsp-pp"
    if beside.is_file():  # an installed environment: its own command, the arguments kept
        assert results._executable(["diffcsp-pp", "evaluate", "csp"]) == [str(beside), "evaluate", "csp"]
    else:
        with pytest.raises(SystemExit, match="neither on PATH"):
            results._executable(["diffcsp-pp", "evaluate", "csp"])
