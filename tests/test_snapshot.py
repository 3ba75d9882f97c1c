"""Heap probes in a forked snapshot child: true counts, the fallback, and no process left behind."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import closuretrace
from closuretrace.probes import snapshot
from closuretrace.probes.heap import CodeFilter, HeapProbe
from closuretrace.probes.snapshot import SnapshotChild
from closuretrace.recording import ProfileOptions
from support import require_module

pytestmark = pytest.mark.skipif(snapshot.unsafe_reason() is not None, reason=str(snapshot.unsafe_reason()))

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _fork_any_heap(monkeypatch):
    """These tests' heaps are small; by default a run on a small heap probes in process."""
    monkeypatch.setenv("CLOSURETRACE_SNAPSHOT_MIN_OBJECTS", "0")


class GarbageNode:
    """Instances are only ever made in reference cycles and dropped: garbage until a full collection."""

    def __init__(self) -> None:
        self.other: GarbageNode | None = None


class KeptNode:
    pass


KEPT: list[object] = []


def _garbage(pairs: int) -> None:
    for _ in range(pairs):
        a, b = GarbageNode(), GarbageNode()
        a.other, b.other = b, a


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_childs_census_equals_the_in_process_census_on_a_heap_with_known_garbage():
    heap = HeapProbe(own=lambda: (), code_filter=CodeFilter())

    def work() -> dict[str, object]:
        gc.collect()
        reading = heap.census()
        return {"gc_objects": reading.gc_objects, "by_type": reading.by_type}

    gc.collect()
    gc.disable()  # the garbage must still be there when the child is forked
    try:
        _garbage(500)
        uncollected = heap.census()
        child = SnapshotChild.spawn(work)
        out = child.result(timeout=60)
        gc.collect()
        here = heap.census(extra_own=(child, out))  # what only the parent holds
    finally:
        gc.enable()
    garbage = _name(GarbageNode)
    assert uncollected.by_type[garbage] == 1000  # the parent did not collect: the garbage was there
    assert garbage not in out["by_type"] and garbage not in here.by_type
    # Equal object for object in a quiet process; where other threads of the test process (JAX's, imported by
    # another test) allocate between the fork and the parent's census, a few objects may differ.
    assert abs(out["gc_objects"] - here.gc_objects) <= 32, (out["gc_objects"], here.gc_objects)
    types_ = set(out["by_type"]) | set(here.by_type)
    assert sum(abs(out["by_type"].get(t, 0) - here.by_type.get(t, 0)) for t in types_) <= 32


LOOP = """
class Node:
    pass
kept = []
def make(i):
    def f():
        return i
    return f
def step(i):
    for _ in range(300):             # reference cycles made and dropped every cycle
        a, b = Node(), Node()
        a.b, b.a = b, a
    kept.append(Node())              # one instance and one closure kept per cycle
    kept.append(make(i))
"""


def _module(name: str, source: str):
    import types

    mod = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod


def _run_loop(in_process: bool, cycles: int = 7):
    mod = _module("ct_snapshot_loop", LOOP)
    try:
        with closuretrace.Profiler(ProfileOptions(probe_in_process=in_process)) as prof:
            for i in range(cycles):
                with prof.cycle():
                    mod.step(i)
        forked = prof._forked.off is None
        return prof.session, forked, prof.census
    finally:
        del sys.modules["ct_snapshot_loop"]


def _in_fresh_process(request: pytest.FixtureRequest) -> bool:
    """Run this test again, alone, in a fresh interpreter, and pass or fail with it; True inside that run.

    A profiled program is a process of its own: in the shared test process, JAX threads another test started make
    a fork unsafe (the profiler rightly probes in process then), and closures other tests left alive are adopted
    by the census, so the two modes would not be compared on the program alone."""
    nodeid = request.node.nodeid
    if os.environ.get("CT_FRESH_TEST") == nodeid:
        return True
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", nodeid],
        cwd=request.config.rootpath, capture_output=True, text=True, timeout=900,
        env={**os.environ, "CT_FRESH_TEST": nodeid, "PYTHONPATH": SRC},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
    return False


def test_a_profiled_loop_gets_the_same_counts_and_verdicts_in_both_modes(request):
    if not _in_fresh_process(request):
        return
    child, forked, child_census = _run_loop(in_process=False)
    here, in_child, here_census = _run_loop(in_process=True)
    assert forked and not in_child
    assert _probe_events(child) == [] and _probe_events(here) == []
    for metric in ("gc_objects", "closures_alive"):
        a, b = child.series(metric), here.series(metric)
        assert len(a) == len(b) == 7
        # The first cycle differs by what the tool itself imported and made once; after it, every step agrees.
        assert [y - a[1] for y in a[1:]] == [y - b[1] for y in b[1:]], (metric, a, b)
    assert child.series("closures_alive") == here.series("closures_alive") == [1, 2, 3, 4, 5, 6, 7]
    node = "ct_snapshot_loop.Node"
    assert [c.get(node) for c in child_census] == [c.get(node) for c in here_census] == list(range(1, 8))
    assert {v.metric: v.state for v in child.verdicts if v.metric != "rss_bytes"} == {
        v.metric: v.state for v in here.verdicts if v.metric != "rss_bytes"
    }
    assert [g.type for g in child.growing_types] == [g.type for g in here.growing_types]
    assert [(r.factory, r.created_cycle, r.collected_cycle) for r in child.closures] == [
        (r.factory, r.created_cycle, r.collected_cycle) for r in here.closures
    ]


def test_a_run_on_a_small_heap_probes_in_process_and_says_why(monkeypatch):
    monkeypatch.setenv("CLOSURETRACE_SNAPSHOT_MIN_OBJECTS", str(10**9))
    session, forked, _ = _run_loop(in_process=False, cycles=3)
    assert not forked
    assert [e.kind for e in _probe_events(session)] == ["probes_in_process"]
    assert "small heap" in _probe_events(session)[0].detail["reason"]
    assert all("gc_objects" in c.metrics for c in session.cycles)


def test_a_hung_child_is_killed_and_the_cycle_falls_back_with_the_report_saying_so(monkeypatch):
    from closuretrace.renderers import html

    monkeypatch.setattr(snapshot, "child_hook", lambda: time.sleep(3600))
    pids: list[int] = []
    spawn = SnapshotChild.spawn.__func__  # type: ignore[attr-defined]

    def spawned(cls, work):
        child = spawn(cls, work)
        pids.append(child.pid)
        return child

    monkeypatch.setattr(SnapshotChild, "spawn", classmethod(spawned))
    mod = _module("ct_snapshot_loop", LOOP)
    try:
        with closuretrace.Profiler(ProfileOptions(probe_in_process=False)) as prof:
            prof._forked.timeout = 0.5
            for i in range(5):
                with prof.cycle():
                    mod.step(i)
                    if i == 0:
                        time.sleep(0.6)  # past the child's deadline when the next cycle ends
    finally:
        del sys.modules["ct_snapshot_loop"]
    session = prof.session
    assert len(pids) == 1, "after the failure every cycle is probed in process"
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    fallback = [e for e in session.events if e.kind == "probe_fallback"]
    assert len(fallback) == 1 and fallback[0].detail["cycle"] == 0
    assert "did not answer within 0.5 s" in fallback[0].detail["reason"]
    assert "gc_objects" not in session.cycles[0].metrics  # that cycle's heap counts are lost, not made up
    assert all("gc_objects" in c.metrics for c in session.cycles[1:])
    made = [c.closures_alive_by_factory.get("ct_snapshot_loop.make") for c in session.cycles]
    assert made == [None, 2, 3, 4, 5]  # the closure of cycle 0 was adopted at the fallback, with its cycle
    assert [r.created_cycle for r in session.closures if r.factory == "ct_snapshot_loop.make"] == [0, 1, 2, 3, 4]
    assert "probe_fallback" in html.render(session)


def _profile(tmp_path: Path, source: str, *args: str, env: dict[str, str] | None = None, **kw):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(source))
    out = tmp_path / "out.json"
    mode = [] if "--probe-in-process" in args else ["--probe-in-child"]  # the snapshot child is opt-in
    cmd = [sys.executable, "-m", "closuretrace", "profile", "-q", *mode, *args, "-o", str(out), str(prog)]
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return cmd, full_env, out


PLAIN = """
import time
keep = []
def step(i):
    keep.append([i] * 10)
for i in range(5):
    step(i)
"""


@pytest.mark.parametrize("in_process", [False, True])
def test_probe_in_process_flag_never_forks(tmp_path, in_process):
    # The hook makes every snapshot child hang: only a run that forks falls back.
    hang = {"CLOSURETRACE_SNAPSHOT_TEST_HANG": "60", "CLOSURETRACE_SNAPSHOT_TIMEOUT": "0.3"}
    flag = ["--probe-in-process"] if in_process else []
    cmd, env, out = _profile(tmp_path, PLAIN, *flag, "--cycle-on", "step", env=hang)
    subprocess.run(cmd, env=env, check=True, timeout=120, cwd=tmp_path)
    data = json.loads(out.read_text())
    kinds = [e["kind"] for e in data["events"] if e["kind"] != "framework"]
    assert data["settings"]["probe_in_process"] is in_process
    if in_process:
        assert kinds == [] and all("gc_objects" in c for c in data["cycles"])
    else:
        assert kinds == ["probe_fallback"]


FORKS_AND_THREADS = """
import os, threading, time
keep = []
stop = threading.Event()
def churn():
    junk = []
    while not stop.is_set():
        junk.append({"x": [1, 2, 3]})
        if len(junk) > 1000:
            junk.clear()
        time.sleep(0)
t = threading.Thread(target=churn, daemon=True)
t.start()
def make(i):
    def f():
        return i
    return f
def step(i):
    keep.append(make(i))
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    while True:                       # reaps any child, the profiler's too
        got, _ = os.wait()
        if got == pid:
            break
for i in range(6):
    step(i)
stop.set()
t.join()
"""


def test_a_program_that_forks_itself_and_runs_threads_gets_a_full_report(tmp_path):
    cmd, env, out = _profile(tmp_path, FORKS_AND_THREADS, "--cycle-on", "step")
    subprocess.run(cmd, env=env, check=True, timeout=300, cwd=tmp_path)
    data = json.loads(out.read_text())
    assert [e for e in data["events"] if e["kind"] != "framework"] == []
    assert len(data["cycles"]) == 6
    assert [c["closures_alive"] for c in data["cycles"]] == [1, 2, 3, 4, 5, 6]
    assert all("gc_objects" in c for c in data["cycles"])
    verdicts = {v["metric"]: v["state"] for v in data["verdicts"]}
    assert verdicts["closures_alive"] == "leak"


SLOW = """
import time
def step(i):
    time.sleep(0.2)
for i in range(1000):
    step(i)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigkill"])
def test_stopping_the_run_during_a_probe_child_leaves_no_process_behind(tmp_path, how):
    hang = {"CLOSURETRACE_SNAPSHOT_TEST_HANG": "600", "CLOSURETRACE_SNAPSHOT_TIMEOUT": "300"}
    cmd, env, out = _profile(tmp_path, SLOW, "--cycle-on", "step", env=hang)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while not children and time.monotonic() < deadline:
            children = parent.children(recursive=True)
            time.sleep(0.05)
        assert children, "no probe child appeared"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
        elif how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.kill()
        proc.wait(timeout=60)
        gone = time.monotonic() + 10
        while time.monotonic() < gone and any(_running(c) for c in children):
            time.sleep(0.05)
        assert not any(_running(c) for c in children)
        if how != "sigkill":
            assert proc.returncode == (130 if how == "ctrl-c" else 143)
            data = json.loads(out.read_text())
            assert [e["kind"] for e in data["events"]] == ["probe_fallback"]
    finally:
        if proc.poll() is None:
            proc.kill()


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_reaped_by_the_program_still_delivers(monkeypatch):
    """The program may reap any child (os.wait(), a SIGCHLD handler): the counts come through the pipe."""
    child = SnapshotChild.spawn(lambda: {"n": 1})
    reaper = threading.Thread(target=lambda: os.waitpid(child.pid, 0))
    reaper.start()
    reaper.join()
    assert child.result(timeout=30) == {"n": 1}


@pytest.mark.tf
def test_the_seed_loop_gets_the_same_verdicts_and_counts_in_both_modes(request):
    """A tiny Keras loop (the seed: a new loss closure, compile and fit per cycle) in each mode."""
    if not _in_fresh_process(request):
        return
    require_module("keras")
    from closuretrace.examples import seed

    def run(in_process: bool):
        with closuretrace.Profiler(ProfileOptions(probe_in_process=in_process), argv=["seed"]) as prof:
            seed.main(["--strategy", "recreate", "--cycles", "5", "--samples", "64"])
        return prof.session, prof._forked.off is None

    child, forked = run(in_process=False)
    here, in_child = run(in_process=True)
    assert forked and not in_child
    assert not [e for e in child.events if e.kind.startswith("probe")]
    states = {v.metric: v.state for v in here.verdicts}
    assert {v.metric: v.state for v in child.verdicts} == states
    assert states["tf_func_graphs"] == "leak" and states["gc_objects"] == "leak"

    def steps(session, metric):
        series = session.series(metric)
        return [b - a for a, b in zip(series[1:], series[2:])]

    assert steps(child, "tf_func_graphs") == steps(here, "tf_func_graphs")
    assert child.series("closures_alive") == here.series("closures_alive")
    for a, b in zip(steps(child, "gc_objects"), steps(here, "gc_objects")):
        assert abs(a - b) <= 0.02 * max(abs(b), 100), (steps(child, "gc_objects"), steps(here, "gc_objects"))


def _probe_events(session):
    """The events of the probes (framework events say which libraries the test process had imported)."""
    return [e for e in session.events if e.kind != "framework"]
