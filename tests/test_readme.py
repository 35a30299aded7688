"""The README's two commands are what a new user runs, and CI runs the test one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    test_command = blocks[1]
    assert test_command.endswith("pytest")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_the_main_job_command_installs_then_reproduces():
    main = _bash_blocks((ROOT / "README.md").read_text())[0]
    assert "\n" not in main
    assert main.index("pip install") < main.index("dvc repro")
