"""Bad inputs and faults: each ends in a clear message, the right exit code, and the report where one is due.

The catalogue with one row per case is ``docs/reliability.md``; every row names the test that proves it (here,
or in the test module that already did). Most cases run ``python -m closuretrace`` in a real subprocess in
``tmp_path``; TensorFlow only where the case needs it (marked ``tf``).

Also here: the observer effect (profiling does not change the growth it measures, keeps nothing alive, and
never shows up in a retention chain) and, in headless Chromium, a real run whose captured value has a hostile
``__repr__``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import closuretrace
from closuretrace.analysis.stats import fit_slope
from closuretrace.instrument.captures import REPR_TIMEOUT, describe, safe_repr
from closuretrace.renderers import render
from closuretrace.runner import EXIT_TERMINATED
from closuretrace.session import Session, SessionError, load_session
from support import chromium_dom, make_session, require_module

TIMEOUT = 90


# -- helpers --------------------------------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("PYTHONSAFEPATH", None)
    return env


def ct(cwd: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m closuretrace ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "closuretrace", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env(),
    )


def profile(cwd: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return ct(cwd, "profile", *args, timeout=timeout)


def write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The whole of stderr is one line ``closuretrace: error: ...``; the exit status is ``code``."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("closuretrace: error: "), proc.stderr
    return lines[0]


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr.rstrip().splitlines()[-1]


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a fresh shell would give them (a test runner may ignore them)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the program ended before it started its loop: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the program did not start in time")
        time.sleep(0.02)


# -- starting the program ---------------------------------------------------------------------------------------

def test_directory_as_script_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    write(tmp_path, "proj/__main__.py", "open('ran', 'w').close()\n")
    line = one_error_line(profile(tmp_path, "-o", "out.json", "proj"))
    assert "proj: is a directory" in line
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "it contains null bytes"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\xfd", "not UTF-8 and no encoding declared"),
    ],
    ids=["null-bytes", "not-utf8"],
)
def test_binary_file_as_script_is_one_line(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "prog.bin").write_bytes(content)
    line = one_error_line(profile(tmp_path, "-o", "out.json", "prog.bin"))
    assert f"{tmp_path / 'prog.bin'}: not a Python script ({why}" in line
    assert not (tmp_path / "out.json").exists()


def test_unwritable_output_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    """Also as root (where the chmod test of test_cli_profile is skipped): a folder nobody can create files in."""
    write(tmp_path, "prog.py", "open('ran', 'w').close()\n")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    else:
        folder = Path("/sys")
        try:
            fd, probe = tempfile.mkstemp(dir=folder)
        except OSError:
            pass
        else:
            os.close(fd)
            os.unlink(probe)
            pytest.skip("/sys is writable here")
    try:
        line = one_error_line(profile(tmp_path, "-o", str(folder / "x.json"), "prog.py"))
        assert "not writable" in line
        assert not (tmp_path / "ran").exists()
    finally:
        if folder.parent == tmp_path:
            folder.chmod(0o755)


# -- how the program ends ---------------------------------------------------------------------------------------

def test_sys_exit_zero_is_a_normal_end_with_a_report(tmp_path: Path) -> None:
    write(tmp_path, "prog.py", "import sys\nprint('done')\nsys.exit(0)\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    run = report(tmp_path / "out.json")["run"]
    assert (run["outcome"], run["exit_code"], run["error"]) == ("exit", 0, None)
    assert last_line(proc) == f"closuretrace: report written to {tmp_path / 'out.json'}"


LOOP = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("started")
try:
    while True:
        time.sleep(0.02)
finally:
    print("finally ran", flush=True)
"""


@pytest.mark.parametrize(
    ("sig", "code", "outcome", "error"),
    [
        (signal.SIGTERM, EXIT_TERMINATED, "terminated", "terminated by SIGTERM"),
        (signal.SIGINT, 130, "interrupted", "KeyboardInterrupt"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_writes_the_report_and_exits_conventionally(
    tmp_path: Path, sig: signal.Signals, code: int, outcome: str, error: str
) -> None:
    write(tmp_path, "loop.py", LOOP)
    out, started = tmp_path / "out.json", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", str(out), "loop.py", str(started)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=_default_signals,
    )
    _wait_for(started, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code == 128 + int(sig), stderr
    assert stdout == "finally ran\n"  # the program's own clean-up ran
    run = report(out)["run"]
    assert (run["outcome"], run["exit_code"], run["error"]) == (outcome, code, error)
    assert stderr.rstrip().splitlines()[-1] == f"closuretrace: report written to {out}"
    if sig == signal.SIGTERM:
        assert "closuretrace: the program was stopped by SIGTERM; writing the report" in stderr
        assert "Traceback" not in stderr


def test_sigterm_exits_even_when_the_program_left_a_thread_running(tmp_path: Path) -> None:
    write(
        tmp_path,
        "threads.py",
        """
        import pathlib, sys, threading, time
        threading.Thread(target=lambda: time.sleep(3600)).start()   # non-daemon: python would wait for it
        pathlib.Path(sys.argv[1]).write_text("started")
        while True:
            time.sleep(0.02)
        """,
    )
    out, started = tmp_path / "out.json", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", str(out), "threads.py", str(started)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=_default_signals,
    )
    _wait_for(started, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == EXIT_TERMINATED, stderr
    assert report(out)["run"]["outcome"] == "terminated"


def test_a_second_sigterm_during_clean_up_is_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        "slow.py",
        """
        import pathlib, sys, time
        pathlib.Path(sys.argv[1]).write_text("started")
        try:
            while True:
                time.sleep(0.02)
        finally:
            pathlib.Path(sys.argv[2]).write_text("stopping")
            time.sleep(0.5)  # clean-up under way when the second SIGTERM comes
            print("clean-up done", flush=True)
        """,
    )
    out, started, stopping = tmp_path / "out.json", tmp_path / "started", tmp_path / "stopping"
    proc = subprocess.Popen(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", str(out), "slow.py", str(started), str(stopping)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=_default_signals,
    )
    _wait_for(started, proc)
    proc.send_signal(signal.SIGTERM)
    _wait_for(stopping, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == EXIT_TERMINATED, stderr
    assert stdout == "clean-up done\n"
    assert report(out)["run"]["outcome"] == "terminated"
    assert "closuretrace: warning: SIGTERM ignored while the run was finishing" in stderr


def test_sigterm_handler_is_restored_and_a_handled_sigterm_is_the_programs(tmp_path: Path) -> None:
    """In process: after the run SIGTERM's handler is what it was; a program's own handler is left to work."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")
    prog = write(
        tmp_path,
        "own.py",
        """
        import os, signal
        got = []
        signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
        os.kill(os.getpid(), signal.SIGTERM)
        assert got == [signal.SIGTERM]
        """,
    )
    from closuretrace import runner

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert runner.run_script(str(prog)) == runner.Outcome("completed", 0, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        # SIGTERM during the run of a program that does not handle it: Terminated, outcome "terminated".
        term = write(tmp_path, "term.py", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nx = 1\n")
        assert runner.run_script(str(term)) == runner.Outcome("terminated", 143, "terminated by SIGTERM")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


def test_system_exit_in_a_thread_ends_only_that_thread_like_python(tmp_path: Path) -> None:
    write(
        tmp_path,
        "prog.py",
        """
        import sys, threading
        def f():
            sys.exit(4)
        t = threading.Thread(target=f)
        t.start()
        t.join()
        print("after")
        """,
    )
    native = subprocess.run([sys.executable, "prog.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    proc = profile(tmp_path, "-q", "-o", "out.json", "prog.py")
    assert (proc.returncode, proc.stdout) == (native.returncode, native.stdout) == (0, "after\n"), proc.stderr
    assert report(tmp_path / "out.json")["run"]["outcome"] == "completed"


def test_os_exit_keeps_its_status_and_says_there_is_no_report(tmp_path: Path) -> None:
    write(tmp_path, "prog.py", "import os\nprint('bye', flush=True)\nos._exit(3)\n")
    proc = profile(tmp_path, "-q", "-o", "out.json", "prog.py")
    assert proc.returncode == 3
    assert proc.stdout == "bye\n"
    assert proc.stderr.splitlines() == [
        "closuretrace: warning: the program called os._exit(3): the process ends now, without a report"
    ]
    assert not (tmp_path / "out.json").exists()


def test_program_that_closes_its_output_streams_still_gets_its_report(tmp_path: Path) -> None:
    write(tmp_path, "prog.py", "import sys\nprint('out')\nsys.stdout.close()\nsys.stderr.close()\nsys.stdout = None\n")
    proc = profile(tmp_path, "-o", "out.json", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert report(tmp_path / "out.json")["run"]["outcome"] == "completed"


# -- processes, threads, the working directory ------------------------------------------------------------------

def test_forked_child_exits_like_python_and_writes_no_report(tmp_path: Path) -> None:
    write(
        tmp_path,
        "fork.py",
        """
        import os, sys
        pid = os.fork()
        if pid == 0:
            print("child", flush=True)
            sys.exit(7)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        """,
    )
    native = subprocess.run([sys.executable, "fork.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    proc = profile(tmp_path, "-o", "out.json", "fork.py")
    assert proc.returncode == native.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(native.stdout.splitlines()) == ["child", "child exit 7"]
    # one summary and one report: the parent's
    assert proc.stderr.count("closuretrace: report written to") == 1, proc.stderr
    assert proc.stderr.count("closuretrace profile of") == 1, proc.stderr
    run = report(tmp_path / "out.json")["run"]
    assert (run["outcome"], run["exit_code"]) == ("completed", 0)


def test_subprocesses_and_multiprocessing_children_run(tmp_path: Path) -> None:
    write(
        tmp_path,
        "mp.py",
        """
        import multiprocessing as mp, subprocess, sys

        def work(q, n):
            q.put(n * n)

        if __name__ == "__main__":
            out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout
            got = []
            for method in ("spawn", "fork"):
                ctx = mp.get_context(method)
                q = ctx.Queue()
                ps = [ctx.Process(target=work, args=(q, i)) for i in (2, 3)]
                for p in ps:
                    p.start()
                got += sorted(q.get(timeout=60) for _ in ps)
                for p in ps:
                    p.join()
                got += [p.exitcode for p in ps]
            print(out.strip(), got)
        """,
    )
    proc = profile(tmp_path, "-q", "-o", "out.json", "mp.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42 [4, 9, 0, 0, 4, 9, 0, 0]\n"
    assert proc.stderr.count("report written") == 1
    assert report(tmp_path / "out.json")["run"]["outcome"] == "completed"


def test_program_that_changes_cwd_and_argv(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(
        tmp_path,
        "prog.py",
        """
        import os, sys
        os.chdir("sub")
        sys.argv[:] = ["changed"]
        sys.argv = ["replaced"]
        """,
    )
    proc = profile(tmp_path, "-q", "prog.py", "a")  # default output: reports/ where closuretrace started
    assert proc.returncode == 0, proc.stderr
    (saved,) = (tmp_path / "reports").glob("prog-*.json")
    run = report(saved)["run"]
    assert run["argv"] == ["prog.py", "a"] and run["cwd"] == str(tmp_path)
    assert not (tmp_path / "sub" / "reports").exists()
    proc = profile(tmp_path, "-q", "-o", "rel.json", "prog.py")  # a relative -o is relative to the start
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rel.json").is_file() and not (tmp_path / "sub" / "rel.json").exists()


def test_closures_created_in_threads_are_all_recorded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "thr.py",
        """
        import threading
        kept = []
        def make(i):
            def cb():
                return i
            return cb
        def step(i):
            kept.append(make(i))
        def worker():
            for i in range(40):
                step(i)
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(len(kept))
        """,
    )
    # Four threads end cycles at once: they take turns, and none of them dies in the tool (it once did, one run
    # in five: the registry's dict changed size while a cycle's census walked it).
    for _ in range(3):
        proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "--cycle-on", "step", "thr.py")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "160\n" and "Traceback" not in proc.stderr, proc.stderr
    data = report(tmp_path / "out.json")
    tracked = [c for c in data["closures"] if c["source"] == "track"]
    assert len(tracked) == 160 and len({c["serial"] for c in tracked}) == 160
    assert all(c["collected_cycle"] is None for c in tracked)
    assert len(data["cycles"]) == 160 and max(c["closures_alive"] for c in data["cycles"]) == 160


# -- captured values ---------------------------------------------------------------------------------------------

HOSTILE_REPRS = """
import threading

class Raises:
    def __repr__(self):
        raise RuntimeError("no repr")

class Recurses:
    def __repr__(self):
        return repr(self)

class Huge:
    def __repr__(self):
        return "x" * 10_000_000

class Blocks:
    def __repr__(self):
        threading.Event().wait()  # forever
        return "never"

def make(value):
    def cb():
        return value
    return cb

kept = [make(Raises()), make(Recurses()), make(Huge()), make(Blocks()), make([Blocks(), 1])]
print("finished")
"""


def test_hostile_reprs_of_captured_values(tmp_path: Path) -> None:
    """A __repr__ that raises, recurses, returns 10 MB or blocks: the program runs on, the report says so."""
    write(tmp_path, "reprs.py", HOSTILE_REPRS)
    t0 = time.monotonic()
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "reprs.py", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    assert proc.stdout == "finished\n"
    reprs = [c["captures"][0]["repr"] for c in report(tmp_path / "out.json")["closures"] if c["source"] == "track"]
    assert reprs[0] == "<__main__.Raises: repr raised RuntimeError>"
    assert reprs[1] == "<__main__.Recurses: repr recursed>"
    assert reprs[2] == "x" * 117 + "..."
    assert reprs[3] == "<__main__.Blocks: repr timed out>"
    assert reprs[4] == "[<__main__.Blocks: repr timed out>, 1]"


def test_a_repr_with_a_lone_surrogate_is_escaped_and_the_report_written(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sur.py",
        """
        class Odd:
            def __repr__(self):
                return "caf\\xe9 \\udcff"
        def make(v):
            def cb():
                return v
            return cb
        kept = make(Odd())
        """,
    )
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "sur.py")
    assert proc.returncode == 0, proc.stderr
    (cap,) = next(c for c in report(tmp_path / "out.json")["closures"] if c["source"] == "track")["captures"]
    assert cap["repr"] == "caf\xe9 \\udcff"


def test_non_utf8_argument_gets_a_report(tmp_path: Path) -> None:
    write(tmp_path, "prog.py", "import sys\nprint(len(sys.argv))\n")
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"closuretrace", b"profile", b"-q", b"-o", b"out.json", b"prog.py", b"\xff"],
        cwd=tmp_path, capture_output=True, timeout=TIMEOUT, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert report(tmp_path / "out.json")["run"]["argv"] == ["prog.py", "\udcff"]


def test_blocking_repr_costs_one_budget_and_fast_paths_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    # The helper is started with _thread.start_new_thread, which threading.active_count() never counts: spy on
    # the start itself (threading keeps its own reference to the function, so only the helper goes through this).
    import _thread

    started: list[object] = []
    real_start = _thread.start_new_thread

    def spy(function: Any, args: tuple[Any, ...], *rest: Any) -> int:
        started.append(function)
        return real_start(function, args, *rest)

    monkeypatch.setattr(_thread, "start_new_thread", spy)
    gate = threading.Event()

    class Blocks:
        def __repr__(self) -> str:
            gate.wait()
            return "late"

    class Quick:
        def __repr__(self) -> str:
            return "quick"

    try:
        t0 = time.perf_counter()
        assert safe_repr(Blocks()) == f"<{Blocks.__module__}.{Blocks.__qualname__}: repr timed out>"
        first = time.perf_counter() - t0
        assert len(started) == 1  # the budget was spent in one helper thread
        # a type that timed out once is not tried again: no second helper, the same placeholder
        assert safe_repr(Blocks()) == f"<{Blocks.__module__}.{Blocks.__qualname__}: repr timed out>"
        assert len(started) == 1
    finally:
        gate.set()
    assert REPR_TIMEOUT <= first < REPR_TIMEOUT + 2.0  # one budget, not a wait for the gate
    # a __repr__ written in Python goes through the helper (so the spy sees what it should) ...
    assert safe_repr(Quick()) == "quick"
    assert len(started) == 2
    # ... builtin scalars, containers of them and exceptions never do
    assert describe("n", 3).repr == "3" and describe("s", "x").repr == "'x'"
    assert describe("d", {"a": [1, 2.5, None]}).repr == "{'a': [1, 2.5, None]}"
    assert safe_repr(KeyError("k")) == "KeyError('k')"
    assert len(started) == 2


def test_a_one_gib_array_is_sized_without_copying(tmp_path: Path) -> None:
    require_module("numpy")
    write(
        tmp_path,
        "big.py",
        """
        import numpy as np
        big = np.zeros(1 << 30, dtype=np.uint8)  # 1 GiB, never touched: not resident
        def make(arr):
            def cb():
                return arr.shape
            return cb
        def step(i):
            return make(big)
        keep = [step(i) for i in range(3)]
        """,
    )
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "--cycle-on", "step", "big.py")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    caps = [c["captures"][0] for c in data["closures"] if c["source"] == "track"]
    assert len(caps) == 3
    assert caps[0] == {
        "name": "arr", "type": "numpy.ndarray", "nbytes": 1 << 30, "repr": "<ndarray shape=1073741824 dtype=uint8>"
    }
    # a copy (or a tobytes()/sum over it) would have made the gigabyte resident
    assert max(c["rss_bytes"] for c in data["cycles"]) < 512 * 1024**2


def test_a_closure_in_a_reference_cycle(tmp_path: Path) -> None:
    write(
        tmp_path,
        "cyc.py",
        """
        kept = []
        def make(i):
            state = {"i": i}
            def cb():
                return cb, state  # cb -> cell -> cb, and state -> cb
            state["self"] = cb
            return cb
        def step(i):
            dropped = make(i)   # garbage only the cycle collector can free
            kept.append(make(-i))
        for i in range(6):
            step(i)
        """,
    )
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "--cycle-on", "step", "cyc.py")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    recs = [c for c in data["closures"] if c["source"] == "track"]
    assert len(recs) == 12
    dropped, kept = recs[0::2], recs[1::2]
    assert [r["collected_cycle"] for r in dropped] == list(range(6))  # freed by the cycle's own gc.collect()
    assert all(r["collected_cycle"] is None for r in kept)
    assert [c["closures_alive"] for c in data["cycles"]] == [1, 2, 3, 4, 5, 6]
    chain = next(r for r in data["retention"] if "closures_alive" in r["metric"])
    assert chain["found"] and chain["root"] == "__main__.kept", chain


def test_a_factory_that_returns_no_callable(tmp_path: Path) -> None:
    write(
        tmp_path,
        "nc.py",
        """
        import closuretrace

        @closuretrace.track
        def numbers(n):
            return n * 2

        def nothing():
            return None

        def pair(n):
            return (lambda: n, lambda: -n)

        print([numbers(i) for i in range(3)], nothing(), len(pair(1)))
        """,
    )
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "nothing", "--track", "pair", "nc.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[0, 2, 4] None 2\n"  # the program gets what the factories return, untouched
    data = report(tmp_path / "out.json")
    assert [c for c in data["closures"] if c["source"] == "track"] == []  # nothing is listed as a closure
    noted = sorted((e["detail"]["factory"], e["detail"]["type"]) for e in data["events"] if e["kind"] == "not_callable")
    assert noted == [("nothing", "NoneType"), ("numbers", "int"), ("pair", "tuple")]
    session = load_session(tmp_path / "out.json")
    for fmt in ("json", "markdown", "html", "text"):
        assert render(session, fmt)


@pytest.mark.tf
def test_closures_made_for_and_inside_tf_data_map_functions() -> None:
    tf = require_module("tensorflow")

    @closuretrace.track
    def scale_by(k: int) -> Any:
        def scale(x: Any) -> Any:
            return x * k

        return scale

    def inner_map(x: Any) -> Any:
        return scale_by(10)(x)  # the factory runs while tf.data traces the map function

    with closuretrace.Profiler(closuretrace.ProfileOptions(keras=False)) as prof:
        totals = []
        for k in (1, 2, 3):
            with prof.cycle():
                ds = tf.data.Dataset.range(4).map(scale_by(k)).map(inner_map)
                totals.append(int(sum(int(v) for v in ds)))
                del ds
    assert totals == [60, 120, 180]
    s = prof.session
    assert s is not None
    mine = [r for r in s.closures if r.factory.endswith("scale_by")]
    # Inside the map function AutoGraph converts the factory: its closure also captures AutoGraph's module.
    assert sorted({c.name: c.repr for c in r.captures}["k"] for r in mine) == ["1", "10", "10", "10", "2", "3"]
    assert {r.qualname.rsplit(".", 1)[-1] for r in mine} == {"scale"}
    assert [r.created_cycle for r in mine] == [0, 0, 1, 1, 2, 2]
    assert all(r.collected_cycle is not None for r in mine[:-2])  # the previous cycles' pipelines are freed
    for fmt in ("json", "markdown", "html", "text"):
        assert render(s, fmt)


# -- reports: render and diff on bad files ------------------------------------------------------------------------

def _good(tmp: Path) -> Path:

    p = tmp / "good.json"
    p.write_text(make_session().to_json(), encoding="utf-8")
    return p


CORRUPT = {
    "empty": ("", "not valid JSON"),
    "binary": (b"\x00\xff\x13PK\x03\x04", "not a text file"),
    "null": ("null", "not a closuretrace session"),
    "run-is-a-list": ('{"schema_version": 1, "run": []}', "malformed"),
    "cycles-is-an-object": ('{"schema_version": 1, "run": {"argv": []}, "cycles": {}}', "malformed"),
    "version-is-a-string": ('{"schema_version": "1", "run": {"argv": []}}', "not a closuretrace session"),
    "capture-is-a-number": (
        '{"schema_version": 1, "run": {"argv": []}, "closures": [{"serial": 1, "id": 1, "factory": "f", '
        '"qualname": "f", "module": "m", "kind": "closure", "source": "track", "created_cycle": 0, '
        '"collected_cycle": null, "captures": [3]}]}',
        "malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_session_files_to_render_and_diff_are_one_line(tmp_path: Path, case: str) -> None:
    content, message = CORRUPT[case]
    bad = tmp_path / "bad.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content, encoding="utf-8")
    good = _good(tmp_path)
    for args in (["render", str(bad), "-o", "out.md"], ["diff", str(good), str(bad), "-o", "out.md"]):
        line = one_error_line(ct(tmp_path, *args))
        assert message in line and str(bad) in line, line
        assert not (tmp_path / "out.md").exists()


def test_huge_session_file_is_rendered(tmp_path: Path) -> None:
    """50 MB of JSON (a long string in the settings and many advice lines) renders; nothing is refused."""
    session = json.loads(_good(tmp_path).read_text(encoding="utf-8"))
    session["settings"]["note"] = "x" * (50 * 1024 * 1024)
    session["advice"] += [f"advice line {i}" for i in range(10_000)]
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(session), encoding="utf-8")
    assert huge.stat().st_size > 50 * 1024 * 1024
    proc = ct(tmp_path, "render", str(huge), "-o", "out.md")
    assert proc.returncode == 0, proc.stderr
    assert "advice line 9999" in (tmp_path / "out.md").read_text(encoding="utf-8")


def test_json_nested_100k_levels_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema_version": 1, "run": {"argv": []}, "settings": ' + '{"a": ' * 100_000 + "1"
                    + "}" * 100_000 + "}", encoding="utf-8")
    good = _good(tmp_path)
    for args in (["render", str(deep), "-o", "out.html"], ["diff", str(good), str(deep)]):
        line = one_error_line(ct(tmp_path, *args))
        assert "JSON nested too deeply" in line


def _nested(levels: int) -> Any:
    d: Any = 1
    for _ in range(levels):
        d = {"a": d}
    return d


def test_free_form_fields_nested_500_deep_are_refused_or_rendered(tmp_path: Path) -> None:
    data = json.loads(_good(tmp_path).read_text(encoding="utf-8"))
    data["settings"]["deep"] = _nested(500)
    data["events"] = [{"cycle": 0, "kind": "compile", "detail": _nested(500)}]
    p = tmp_path / "deep.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # python's default, as under the command line (a library may have raised it)
    try:
        try:
            session = load_session(p)
        except SessionError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(session, Session)
        for fmt in ("json", "markdown", "html", "text"):
            render(session, fmt)
    finally:
        sys.setrecursionlimit(limit)


# -- the observer effect -------------------------------------------------------------------------------------------

GROWTH = """
import gc, json, sys
leaked = []

def make(i):
    def cb(x):
        return x + i
    return cb

def step(i):
    leaked.append(make(i))
    leaked.append([i] * 3)
    leaked.append({"i": [i]})

native = sys.argv[1:] == ["native"]
counts = []
for i in range(8):
    step(i)
    if native:
        gc.collect()
        counts.append(len(gc.get_objects()))
if native:
    print(json.dumps(counts))
"""


def test_profiling_does_not_change_the_growth_it_measures(tmp_path: Path) -> None:
    """The same script's gc-object growth per step: python natively vs the report's slope under --cycle-on step."""
    write(tmp_path, "growth.py", GROWTH)
    native = subprocess.run(
        [sys.executable, "growth.py", "native"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert native.returncode == 0, native.stderr
    counts = json.loads(native.stdout)
    native_slope = fit_slope(counts[1:]).slope
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", "growth.py")
    assert proc.returncode == 0, proc.stderr
    data = report(tmp_path / "out.json")
    assert len(data["cycles"]) == 8
    verdict = next(v for v in data["verdicts"] if v["metric"] == "gc_objects")
    profiled = [c["gc_objects"] for c in data["cycles"]]
    assert native_slope == 6  # a function, its cell and closure tuple, two lists and a dict per step
    assert abs(verdict["slope_per_cycle"] - native_slope) <= 0.5, (counts, profiled)
    assert abs(fit_slope(profiled[1:]).slope - native_slope) <= 0.5, (counts, profiled)


ALIVE = """
import gc, sys, weakref

class Payload:
    pass

def make(p):
    def cb():
        return p
    return cb

kept = []

def step(i):
    kept.append(make(Payload()))

for i in range(6):
    step(i)
refs = [weakref.ref(f) for f in kept] + [weakref.ref(f.__closure__[0].cell_contents) for f in kept]
kept.clear()
gc.collect()
print(sum(r() is not None for r in refs), len(refs))
"""


def test_the_tool_keeps_no_closure_or_captured_value_alive(tmp_path: Path) -> None:
    """Tracked, found by the census, sampled, counted: once the script drops them, all are gone at its last line."""
    write(tmp_path, "alive.py", ALIVE)
    proc = profile(tmp_path, "-q", "-o", "out.json", "--track", "make", "--cycle-on", "step", "alive.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0 12\n"  # none of the 6 closures and 6 captured payloads is alive
    data = report(tmp_path / "out.json")
    assert len([c for c in data["closures"] if c["source"] == "track"]) == 6
    assert next(v for v in data["verdicts"] if v["metric"] == "closures_alive")["leak"] is True


LEAKS = {
    "list": "kept = []\ndef step(i):\n    kept.append(make(i))\n",
    "dict-registry": "REGISTRY = {}\ndef step(i):\n    REGISTRY[f'k{i}'] = make(i)\n",
    "class-attribute": "class Cache:\n    items = []\ndef step(i):\n    Cache.items.append(make(i))\n",
    "instance": "class Trainer:\n    def __init__(self):\n        self.losses = []\nT = Trainer()\n"
    "def step(i):\n    T.losses.append(make(i))\n",
    "closure-cell": "def holder():\n    box = []\n    def add(f):\n        box.append(f)\n    return add\n"
    "ADD = holder()\ndef step(i):\n    ADD(make(i))\n",
    "objects": "kept = []\nclass Blob:\n    pass\ndef step(i):\n    kept.append([Blob() for _ in range(300)])\n"
    "    make(i)\n",
}
MAKE = "def make(i):\n    payload = [i] * 10\n    def cb():\n        return payload\n    return cb\n"


def test_the_tools_own_objects_never_appear_in_a_retention_chain(tmp_path: Path) -> None:
    procs = {}
    for name, body in LEAKS.items():
        write(tmp_path, f"{name}.py", MAKE + body + "for i in range(6):\n    step(i)\n")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", f"{name}.json", "--cycle-on", "step",
             f"{name}.py"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
    for name, p in procs.items():
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, (name, err)
        data = report(tmp_path / f"{name}.json")
        chains = [r for r in data["retention"] if r["found"]]
        assert chains, (name, data["retention"])
        for chain in chains:
            assert chain["chain"] and chain["root"].startswith("__main__."), (name, chain)
            for text in [chain["root"], chain["target"], *chain["chain"]]:
                assert "closuretrace" not in text.lower(), (name, chain)
                assert "ClosureRecord" not in text and "HeapProbe" not in text and "weakref" not in text, (name, chain)


# -- HTML safety, end to end, in a real browser ------------------------------------------------------------------

PWN_IMG = """</script><img src=x onerror="document.title='PWNED'">"""


class _DOM(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def test_hostile_repr_from_a_real_run_is_text_in_chromium(chromium: str, tmp_path: Path) -> None:

    write(
        tmp_path,
        "evil.py",
        f"""
        class Evil:
            def __repr__(self):
                return {PWN_IMG!r}

        def make(value):
            def cb():
                return value
            return cb

        kept = []

        def step(i):
            kept.append(make(Evil()))

        for i in range(5):
            step(i)
        """,
    )
    proc = profile(tmp_path, "-q", "--track", "make", "--cycle-on", "step", "evil.py")
    assert proc.returncode == 0, proc.stderr
    (saved,) = (tmp_path / "reports").glob("evil-*.json")
    data = report(saved)
    assert {c["captures"][0]["repr"] for c in data["closures"] if c["source"] == "track"} == {PWN_IMG}
    page = saved.with_suffix(".html")
    again = ct(tmp_path, "render", str(saved), "-o", "again.html")
    assert again.returncode == 0, again.stderr
    for html_file in (page, tmp_path / "again.html"):
        dump = chromium_dom(chromium, html_file, tmp_path)
        dom = _DOM()
        dom.feed(dump)
        dom.close()
        assert "PWNED" not in dom.title and dom.title.startswith("closuretrace"), dom.title
        assert [t for t, _ in dom.tags if t == "img"] == []
        assert [a for t, a in dom.tags if t == "script"] == [{"type": "application/json", "id": "session"}]
        assert [(t, k) for t, a in dom.tags for k in a if k.startswith("on")] == []
        # the payload is there, as data: inside the page's one (JSON, never executed) script element
        embedded = re.search(r'<script type="application/json" id="session">(.*?)</script>', dump, re.S)
        assert embedded is not None
        reprs = {c["captures"][0]["repr"] for c in json.loads(embedded.group(1))["closures"]}
        assert reprs == {PWN_IMG}


# -- in-process: the runner puts back what it changed ------------------------------------------------------------------

def test_in_process_run_leaves_no_wrapped_os_exit_or_handler(tmp_path: Path) -> None:
    from closuretrace import runner

    prog = write(tmp_path, "p.py", "import os\nx = os._exit\n")
    real_exit, handler = os._exit, signal.getsignal(signal.SIGTERM)
    seen: dict[str, Any] = {}
    runner.run_script(str(prog), after=lambda o: seen.update(x=sys.modules["__main__"].x))
    assert seen["x"] is not real_exit and getattr(seen["x"], "__wrapped__", None) is real_exit
    assert os._exit is real_exit and signal.getsignal(signal.SIGTERM) is handler
