"""The README's two opening commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _opening_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "the README must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_install_and_run_then_install_and_test() -> None:
    main_job, tests = _opening_commands()
    assert main_job.startswith('pip install ".[tensorflow]" && closuretrace ')
    assert tests.startswith('pip install -e ".[test,tensorflow,integrations]" && ')
    assert tests.split("&&")[-1].strip().startswith("python -m pytest")


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _opening_commands()[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.M), f"{test_command!r} not run by .ci/run"
