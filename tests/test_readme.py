"""The README's test command is what CI runs, and the README's example output is what we print."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(c for c in _commands(readme) if "pytest" in c)
    assert test_cmd.strip() in ci.splitlines()


def test_readme_main_job_output_is_current(tmp_path):
    """The main job (a prediction with the bundled default model) prints what the README shows: the
    same lines, the cell parameters to within the last printed digits (floating-point sums may
    differ between CPUs), and the structure keeps its space group."""
    import json
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    main_cmd = _commands(readme)[0]
    args = main_cmd.split("&&")[-1].split()
    assert args[:2] == ["diffcsp-pp", "predict"]
    run = subprocess.run([sys.executable, "-m", "diffcsp_pp.cli.main", *args[1:]], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    shown = re.search(r"The first command prints.*?```\n(.+?)\n```", readme, flags=re.S).group(1).splitlines()
    printed = run.stdout.strip().splitlines()
    assert len(printed) == len(shown)
    number = re.compile(r"-?\d+\.\d+")
    for got, want in zip(printed, shown, strict=True):
        assert number.sub("#", got) == number.sub("#", want)
        for a, b in zip(number.findall(got), number.findall(want), strict=True):
            assert abs(float(a) - float(b)) <= 0.01
    manifest = json.loads((tmp_path / args[args.index("--out") + 1] / "manifest.json").read_text())
    assert manifest["requested_space_group_rate"] == 1.0
