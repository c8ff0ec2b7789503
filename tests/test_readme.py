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


def test_readme_main_job_output_is_current():
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    main_cmd = _commands(readme)[0]
    args = main_cmd.split("&&")[-1].split()
    assert args[:2] == ["diffcsp-pp", "symmetry"]
    out = subprocess.run(
        [sys.executable, "-m", "diffcsp_pp.cli.main", *args[1:]], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert out.strip() in readme
