"""``closuretrace profile`` end to end, in real subprocesses: exit codes, the report in every outcome,
one-line errors, --cycle-on/--track without code changes, --fail-on-leak, the default report path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from closuretrace import load_session, render_text
from closuretrace.cli.profile import EXIT_LEAK
from closuretrace.units import parse_size, parse_threshold

MiB = 1024 * 1024


def profile(
    tmp_path: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", *args],
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def report_of(tmp_path: Path, prog: str, out: str, *args: str) -> dict[str, Any]:
    """The JSON report of ``closuretrace profile -q -o OUT ARGS PROG`` (which must exit 0)."""
    proc = profile(tmp_path, "-q", "-o", out, *args, prog)
    assert proc.returncode == 0, proc.stderr
    return report(tmp_path / out)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("closuretrace: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- outcomes ---------------------------------------------------------------------------------------------

OUTCOMES = [
    ("print('hello')\n", 0, "completed", None),
    ("x = 1\n\ndef f():\n    raise ValueError('bad value')\n\nf()\n", 1, "exception", "ValueError: bad value"),
    ("import sys\nsys.exit(3)\n", 3, "exit", "3"),
    ("import sys\nsys.exit('goodbye message')\n", 1, "exit", "goodbye message"),
    ("import sys\nsys.exit()\n", 0, "exit", None),
    ("def g():\n    raise KeyboardInterrupt\n\ng()\n", 130, "interrupted", "KeyboardInterrupt"),
]


@pytest.mark.parametrize(("body", "code", "outcome", "error"), OUTCOMES, ids=lambda v: str(v)[:20])
def test_outcome_exit_code_and_report(tmp_path: Path, body: str, code: int, outcome: str, error: str | None) -> None:
    prog = script(tmp_path, "prog.py", body)
    out = tmp_path / "out.json"
    proc = profile(tmp_path, "-o", str(out), "prog.py")
    assert proc.returncode == code, proc.stderr
    run = report(out)["run"]
    assert (run["outcome"], run["exit_code"], run["error"]) == (outcome, code, error)
    assert proc.stderr.rstrip().splitlines()[-1] == f"closuretrace: report written to {out}"
    if outcome == "exception":
        # The user's traceback, like python prints it, pointing at the script's lines; none of the tool's frames.
        assert "Traceback (most recent call last):" in proc.stderr
        assert f'File "{prog}", line 4, in f' in proc.stderr
        assert f'File "{prog}", line 6, in <module>' in proc.stderr
        assert "ValueError: bad value" in proc.stderr
        assert "closuretrace" not in proc.stderr.split("ValueError: bad value")[0]
    if error == "goodbye message":
        assert proc.stderr.splitlines()[0] == "goodbye message"
    if outcome == "completed":
        assert proc.stdout == "hello\n"  # the summary goes to stderr: the program's stdout stays clean
        # stderr is exactly the text summary of the report just written, then where it was written
        assert proc.stderr == render_text(load_session(out)) + f"closuretrace: report written to {out}\n"


def test_quiet_prints_no_summary(tmp_path: Path) -> None:
    script(tmp_path, "prog.py", "print('hi')\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "prog.py")
    assert proc.returncode == 0
    assert proc.stdout == "hi\n"
    assert proc.stderr.splitlines() == [f"closuretrace: report written to {tmp_path / 'out.json'}"]


# -- usage errors: one line, exit 2, nothing run ------------------------------------------------------------

def test_missing_script(tmp_path: Path) -> None:
    line = one_error_line(profile(tmp_path, "-o", "out.json", "nope.py"))
    assert "nope.py" in line
    assert not (tmp_path / "out.json").exists()


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = script(tmp_path, "bad.py", "x = 1\ny = 2\ndef f(:\n    pass\n")
    line = one_error_line(profile(tmp_path, "-o", "out.json", "bad.py"))
    assert f"{bad}:3:" in line and "SyntaxError" in line
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option", "prog.py"],
        ["--threshold", "rss_bytes=12XB", "prog.py"],
        ["--threshold", "nope=1", "prog.py"],
        ["--warmup", "x", "prog.py"],
        ["--track", "not a name", "prog.py"],
        ["-m", "no_such_module_xyz"],
        [],
    ],
    ids=["unknown-option", "bad-size", "bad-metric", "bad-warmup", "bad-track", "no-module", "no-script"],
)
def test_usage_errors(tmp_path: Path, args: list[str]) -> None:
    script(tmp_path, "prog.py", "open('ran', 'w').close()\n")
    one_error_line(profile(tmp_path, *args))
    assert not (tmp_path / "ran").exists()


def test_unwritable_output_is_refused_before_the_run(tmp_path: Path) -> None:
    script(tmp_path, "prog.py", "open('ran', 'w').close()\n")
    line = one_error_line(profile(tmp_path, "-o", str(tmp_path / "no" / "dir" / "x.json"), "prog.py"))
    assert "does not exist" in line
    one_error_line(profile(tmp_path, "-o", str(tmp_path), "prog.py"))  # a directory
    assert not (tmp_path / "ran").exists()


def test_parse_size_and_threshold() -> None:
    assert parse_size("1MiB") == 1024**2
    assert parse_size("1.5 KiB") == 1536
    assert parse_size("2MB") == 2_000_000
    assert parse_size("3gb") == 3 * 10**9
    assert parse_size("64") == 64 == parse_size("64B")
    for bad in ("", "MiB", "-1KiB", "1 XB", "1e3", "nan"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_threshold("rss_bytes=1MiB") == ("rss_bytes", 1024.0**2)
    assert parse_threshold("gc_objects=200") == ("gc_objects", 200.0)
    for bad in ("gc_objects=1MiB", "gc_objects", "=3", "unknown=3", "gc_objects=-1"):
        with pytest.raises(ValueError):
            parse_threshold(bad)


def test_threshold_reaches_the_verdicts(tmp_path: Path) -> None:
    script(tmp_path, "prog.py", "pass\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "--threshold", "rss_bytes=2MiB", "--threshold",
                   "gc_objects=7", "--warmup", "0", "prog.py")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    assert data["settings"]["thresholds"] == {"rss_bytes": 2 * 1024**2, "gc_objects": 7}
    assert data["settings"]["warmup"] == 0
    floors = {v["metric"]: v["noise_floor"] for v in data["verdicts"]}
    assert floors["rss_bytes"] == 2 * 1024**2
    assert floors["gc_objects"] == 7
    # a metric without a --threshold keeps its default floor
    default = report_of(tmp_path, "prog.py", "default.json")
    assert floors["closures_alive"] == {v["metric"]: v["noise_floor"] for v in default["verdicts"]}["closures_alive"]
    assert {v["metric"]: v["noise_floor"] for v in default["verdicts"]}["rss_bytes"] != 2 * 1024**2


# -- --cycle-on / --track without code changes ----------------------------------------------------------------

LEAKY = """
leaked = []

def step(i):
    def loss(x):
        return x + i
    leaked.append(loss)

for i in range(6):
    step(i)
"""

FLAT = """
def step(i):
    def loss(x):
        return x + i
    return loss(1)

for i in range(6):
    step(i)
"""


def _closures_verdict(data: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in data["verdicts"] if v["metric"] == "closures_alive"]
    assert len(found) == 1
    return found[0]


def test_cycle_on_finds_the_closure_leak(tmp_path: Path) -> None:
    script(tmp_path, "leaky.py", LEAKY)
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", "leaky.py")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    data = report(tmp_path / "out.json")
    assert len(data["cycles"]) == 6
    assert [c["closures_alive"] for c in data["cycles"]] == [1, 2, 3, 4, 5, 6]
    assert _closures_verdict(data)["leak"] is True
    chain = next(r for r in data["retention"] if "closures_alive" in r["metric"])
    assert chain["found"] and chain["root"] == "__main__.leaked", chain
    assert chain["chain"][0].startswith("__main__.leaked → list")
    assert "step.<locals>.loss" in chain["chain"][-1]

    proc = profile(tmp_path, "-q", "-o", "out2.json", "--cycle-on", "step", "--fail-on-leak", "leaky.py")
    assert proc.returncode == EXIT_LEAK == 10, proc.stderr


def test_cycle_on_flat_program_has_no_leak(tmp_path: Path) -> None:
    script(tmp_path, "flat.py", FLAT)
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", "--fail-on-leak", "flat.py")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    assert len(data["cycles"]) == 6
    assert _closures_verdict(data)["leak"] is False


def test_fail_on_leak_keeps_the_programs_own_failure(tmp_path: Path) -> None:
    script(tmp_path, "leaky.py", LEAKY + "raise SystemExit(5)\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", "--fail-on-leak", "leaky.py")
    assert proc.returncode == 5, proc.stderr


def test_unmatched_cycle_on_is_a_warning(tmp_path: Path) -> None:
    script(tmp_path, "flat.py", FLAT)
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "foo", "flat.py")
    assert proc.returncode == 0, proc.stderr
    assert any(
        line.startswith("closuretrace: warning: --cycle-on foo matched no function")
        for line in proc.stderr.splitlines()
    ), proc.stderr
    assert len(report(tmp_path / "out.json")["cycles"]) == 1  # no cycle ended: the run is one


def test_track_factory_of_the_script(tmp_path: Path) -> None:
    script(
        tmp_path,
        "factory.py",
        """
        def outer(n):
            def inner():
                return n
            return inner

        class Trainer:
            def make(self, n):
                return lambda: n

            @staticmethod
            def smake(n):
                return lambda: n

        kept = [outer(i) for i in range(5)]
        made = [Trainer().make(i) for i in range(2)] + [Trainer().smake(7)]
        """,
    )
    proc = profile(
        tmp_path, "-q", "-o", "out.json", "--track", "outer", "--track", "Trainer.make", "--track", "Trainer.smake",
        "factory.py",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    closures = report(tmp_path / "out.json")["closures"]
    tracked = [c for c in closures if c["source"] == "track"]
    assert sorted(c["factory"] for c in tracked) == ["Trainer.make"] * 2 + ["Trainer.smake"] + ["outer"] * 5


def test_track_keeps_line_numbers_of_tracebacks(tmp_path: Path) -> None:
    prog = tmp_path / "tb.py"
    prog.write_text("\n\ndef outer():\n    raise ValueError('in outer')\n\nouter()\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "outer", "tb.py")
    assert proc.returncode == 1
    assert f'File "{prog}", line 4, in outer' in proc.stderr
    assert f'File "{prog}", line 6, in <module>' in proc.stderr
    assert "track.py" not in proc.stderr


def test_track_module_qualname(tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "losses.py").write_text(
        "def outer_loss(offset):\n    def loss(y):\n        return y + offset\n    return loss\n"
    )
    script(
        tmp_path,
        "train.py",
        """
        from helpers.losses import outer_loss
        import helpers.losses
        keep = [outer_loss(i) for i in range(3)] + [helpers.losses.outer_loss(9)]
        """,
    )
    proc = profile(
        tmp_path, "-q", "-o", "out.json", "--track", "helpers.losses:outer_loss",
        "--track", "helpers.losses:missing", "train.py",
    )
    assert proc.returncode == 0, proc.stderr
    tracked = [c for c in report(tmp_path / "out.json")["closures"] if c["source"] == "track"]
    assert len(tracked) == 4
    assert {c["factory"] for c in tracked} == {"helpers.losses.outer_loss"}
    assert "--track helpers.losses:missing matched no function" in proc.stderr


# -- the default report path ----------------------------------------------------------------------------------

def test_default_output_in_reports_and_concurrent_runs_do_not_clash(tmp_path: Path) -> None:
    script(tmp_path, "job.py", "import time\ntime.sleep(0.3)\n")
    cmd = [sys.executable, "-m", "closuretrace", "profile", "-q", "job.py"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    files = sorted((tmp_path / "reports").glob("job-*.json"))
    assert len(files) == 2
    for f in files:
        assert f.name.split("-")[1].endswith("Z")
        assert report(f)["run"]["outcome"] == "completed"
    assert sorted(p.pid for p in procs) == sorted(int(f.stem.rsplit("-", 1)[1]) for f in files)
    assert not [f for f in os.listdir(tmp_path / "reports") if f.endswith(".tmp")]
    # Each run writes JSON, Markdown and HTML side by side.
    for f in files:
        assert f.with_suffix(".md").read_text().startswith("# closuretrace profile of job.py")
        assert "<svg" in f.with_suffix(".html").read_text()


def test_render_of_the_saved_json_equals_what_profile_wrote(tmp_path: Path) -> None:
    script(tmp_path, "leaky.py", LEAKY)
    proc = profile(tmp_path, "-q", "--cycle-on", "step", "leaky.py")
    assert proc.returncode == 0, proc.stderr
    (saved,) = (tmp_path / "reports").glob("leaky-*.json")
    for ext in (".md", ".html"):
        again = subprocess.run(
            [sys.executable, "-m", "closuretrace", "render", str(saved), "-o", f"again{ext}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert again.returncode == 0, again.stderr
        assert (tmp_path / f"again{ext}").read_text() == saved.with_suffix(ext).read_text()
    assert "__main__.leaked" in saved.with_suffix(".md").read_text()


def test_unknown_output_extension_is_refused_before_the_run(tmp_path: Path) -> None:
    script(tmp_path, "prog.py", "open('ran', 'w').close()\n")
    line = one_error_line(profile(tmp_path, "-o", "out.pdf", "prog.py"))
    assert "extension '.pdf'" in line
    assert not (tmp_path / "ran").exists()


def test_cycle_on_in_a_module_run_with_dash_m(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "train.py").write_text(textwrap.dedent(LEAKY))
    # module:qualname naming the -m module itself means its own function (it runs as __main__).
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "pkg.train:step", "-m", "pkg.train", "--cycle-on")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    assert len(data["cycles"]) == 6
    assert _closures_verdict(data)["leak"] is True
    assert data["run"]["argv"] == [str(tmp_path / "pkg" / "train.py"), "--cycle-on"]


# -- writing the report -----------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_directory_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        script(tmp_path, "prog.py", "open('ran', 'w').close()\n")
        line = one_error_line(profile(tmp_path, "-o", str(ro / "x.json"), "prog.py"))
        assert "not writable" in line
        assert not (tmp_path / "ran").exists()
    finally:
        ro.chmod(0o755)


def test_report_falls_back_to_temp_dir_when_output_vanishes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "tmp").mkdir()
    script(tmp_path, "prog.py", "import shutil\nshutil.rmtree('sub')\n")
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    proc = profile(tmp_path, "-q", "-o", "sub/out.json", "prog.py", env=env)
    assert proc.returncode == 0, proc.stderr
    fallback = tmp_path / "tmp" / "out.json"
    assert report(fallback)["run"]["outcome"] == "completed"
    assert f"writing it to {fallback} instead" in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"closuretrace: report written to {fallback}"


# -- --tracemalloc, --census-all --------------------------------------------------------------------------------

KEEPS_A_MIB = """
kept = []

def step(i):
    kept.append(bytes(1024 * 1024))  # 1 MiB of Python allocations kept per cycle (zero pages: barely any RSS)

for i in range(6):
    step(i)
"""


def test_tracemalloc_adds_its_metric_and_its_verdict(tmp_path: Path) -> None:
    script(tmp_path, "keeps.py", KEEPS_A_MIB)
    plain = report_of(tmp_path, "keeps.py", "plain.json", "--cycle-on", "step")
    assert plain["settings"]["tracemalloc"] is False
    assert not any("tracemalloc_bytes" in c for c in plain["cycles"])
    assert "tracemalloc_bytes" not in [m["name"] for m in plain["metrics"]] + [v["metric"] for v in plain["verdicts"]]

    data = report_of(tmp_path, "keeps.py", "traced.json", "--cycle-on", "step", "--tracemalloc")
    assert data["settings"]["tracemalloc"] is True
    info = next(m for m in data["metrics"] if m["name"] == "tracemalloc_bytes")
    assert (info["unit"], info["label"]) == ("bytes", "tracemalloc")
    traced = [c["tracemalloc_bytes"] for c in data["cycles"]]
    assert len(traced) == 6
    steps = [b - a for a, b in zip(traced, traced[1:])]
    assert all(MiB <= s < 1.25 * MiB for s in steps), steps  # the kept MiB, and little else
    (v,) = [v for v in data["verdicts"] if v["metric"] == "tracemalloc_bytes"]
    assert v["leak"] is True and v["state"] == "leak"
    assert MiB <= v["slope_per_cycle"] < 1.25 * MiB
    assert v["noise_floor"] == 256 * 1024  # the probe's default floor
    assert v["n_cycles"] == 5  # after the warm-up


CENSUS = """
import contextlib

kept = []

def gen():
    yield

def step(i):
    # contextmanager's helper: a closure whose code is in the stdlib (functools.wraps names it after gen)
    kept.append(contextlib.contextmanager(gen))

for i in range(6):
    step(i)
"""


def test_census_all_lists_closures_whose_code_is_in_the_stdlib(tmp_path: Path) -> None:
    script(tmp_path, "census.py", CENSUS)
    plain = report_of(tmp_path, "census.py", "plain.json", "--cycle-on", "step")
    assert plain["settings"]["include_libraries"] is False
    assert [c["closures_alive"] for c in plain["cycles"]] == [0] * 6  # the stdlib's closures are not the user's
    assert plain["closures"] == []
    assert _closures_verdict(plain)["leak"] is False

    data = report_of(tmp_path, "census.py", "all.json", "--cycle-on", "step", "--census-all")
    assert data["settings"]["include_libraries"] is True
    assert [c["closures_alive_by_factory"].get("gen") for c in data["cycles"]] == [1, 2, 3, 4, 5, 6]
    helpers = [c for c in data["closures"] if c["factory"] == "gen"]
    assert [(c["created_cycle"], c["collected_cycle"], c["source"]) for c in helpers] == [
        (i, None, "census") for i in range(6)
    ]
    assert [cap["name"] for cap in helpers[0]["captures"]] == ["func"]  # contextlib's own variable
    verdict = _closures_verdict(data)
    assert verdict["leak"] is True and verdict["slope_per_cycle"] == 1.0
    chain = next(r for r in data["retention"] if "closures_alive" in r["metrics"])
    assert chain["root"] == "__main__.kept", chain
    # the libraries' own closures, alive from the start, are listed too (and, flat, are no verdict's concern)
    assert any(c["factory"].startswith("functools.") for c in data["closures"])
