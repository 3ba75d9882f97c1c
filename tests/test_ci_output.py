"""Where CI and a terminal see closuretrace: the GitHub step summary (profile and the pytest plugin; compare's is
checked on its real run in test_compare.py), the one line --fail-on-leak prints for a log, and the live status
line that only a terminal gets."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

from closuretrace.cli.profile import EXIT_LEAK
from closuretrace.renderers import render
from closuretrace.session import load_session

pytest_plugins = ["pytester"]

LEAKY = """
    leaked = []
    def step(i):
        def loss(y):
            return y + i
        leaked.append(loss)
    for i in range(6):
        step(i)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "CI")}
    env.update(extra)
    return env


def _profile(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "leaky.py").write_text(textwrap.dedent(LEAKY))
    return subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", *args, "leaky.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )


def test_profile_appends_its_markdown_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    proc = _profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", env=_env(GITHUB_STEP_SUMMARY=str(summary)))
    assert proc.returncode == 0, proc.stderr
    text = summary.read_text(encoding="utf-8")
    expected = render(load_session(tmp_path / "out.json"), "markdown")
    assert text.startswith("# earlier step\n")  # appended, never overwritten
    assert text == "# earlier step\n" + expected.rstrip("\n") + "\n\n"
    assert "**LEAK**" in text and "closures alive" in text


def test_no_step_summary_opts_out_and_an_unwritable_one_costs_only_a_warning(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    proc = _profile(tmp_path, "-q", "-o", "a.json", "--cycle-on", "step", "--no-step-summary",
                    env=_env(GITHUB_STEP_SUMMARY=str(summary)))
    assert proc.returncode == 0, proc.stderr
    assert not summary.exists()
    proc = _profile(tmp_path, "-q", "-o", "b.json", "--cycle-on", "step",
                    env=_env(GITHUB_STEP_SUMMARY=str(tmp_path / "no" / "such" / "dir" / "s.md")))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.json").is_file()
    assert "closuretrace: warning: cannot append to GITHUB_STEP_SUMMARY" in proc.stderr


def test_fail_on_leak_names_the_metric_and_the_holder_in_one_line(tmp_path: Path) -> None:
    proc = _profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", "--fail-on-leak", env=_env())
    assert proc.returncode == EXIT_LEAK, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "--fail-on-leak" in ln]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("closuretrace: --fail-on-leak: leak: ")
    assert "closures alive +1/cycle" in line and "held by __main__.leaked" in line, line


def _run_in_pty(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``closuretrace profile`` with a terminal as its stderr (stdout too); everything it wrote there."""
    master, slave = pty.openpty()
    (tmp_path / "slow.py").write_text(textwrap.dedent("""
        import time
        kept = []
        def step(i):
            kept.append(bytearray(100_000))
            time.sleep(0.05)
        for i in range(5):
            step(i)
    """))
    proc = subprocess.Popen(
        [sys.executable, "-m", "closuretrace", "profile", *args, "slow.py"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_live_status_shows_on_a_terminal_only(tmp_path: Path) -> None:
    env = _env(TERM="xterm", COLUMNS="120")
    code, out = _run_in_pty(tmp_path, "-o", "t.json", "--cycle-on", "step", env=env)
    assert code == 0, out
    assert "closuretrace: cycle 4" in out and "gc objects" in out, out
    code, out = _run_in_pty(tmp_path, "-q", "-o", "q.json", "--cycle-on", "step", env=env)
    assert code == 0 and "closuretrace: cycle" not in out, out  # --quiet
    code, out = _run_in_pty(tmp_path, "-o", "c.json", "--cycle-on", "step", env=_env(TERM="xterm", CI="true"))
    assert code == 0 and "closuretrace: cycle" not in out, out  # a CI log, even on a terminal
    (tmp_path / "leaky.py").write_text(textwrap.dedent(LEAKY))
    proc = subprocess.run([sys.executable, "-m", "closuretrace", "profile", "-o", "p.json", "--cycle-on", "step",
                           "slow.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "closuretrace: cycle" not in proc.stderr, proc.stderr  # a pipe


def test_the_plugin_appends_its_run_report_to_the_step_summary(pytester, monkeypatch) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(
        test_leaky="""
        import pytest

        kept = []

        @pytest.mark.closuretrace(max_alive_closures=0)
        def test_keeps_a_closure():
            x = 1
            def cb():
                return x
            kept.append(cb)

        @pytest.mark.closuretrace
        def test_fine():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# closuretrace"), text[:200]
    assert "test_keeps_a_closure" in text and "max_alive_closures" in text and "test_fine" in text
    summary.unlink()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--closuretrace-no-step-summary")
    result.assert_outcomes(passed=1, failed=1)
    assert not summary.exists()
