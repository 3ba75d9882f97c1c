"""Run jobs (one Python process each) up to ``jobs`` at a time, with a progress display on stderr.

Each job is ``python -m <module> ... --out <file>``: the process writes its result as JSON to that file and may
report progress on stdout as ``@closuretrace progress <done> <total>`` lines. A process that crashes (no result
file, a signal, a non-zero exit without a result) becomes a :class:`JobResult` with the tail of its stderr, so
the caller can record it and go on. On a terminal the display is a ``rich`` progress bar per running job;
elsewhere (CI logs, pipes) it is one plain line per finished job.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from closuretrace.experiment.worker import PROGRESS_PREFIX

#: Characters of a crashed process's stderr kept in the report.
STDERR_TAIL = 3000


@dataclass
class Job:
    """One process to run: ``python -m module *args --out <file>``."""

    key: str
    label: str
    module: str
    args: list[str] = field(default_factory=list)
    total: int = 1
    #: expected cost, for the order of starting (most expensive first)
    weight: float = 1.0
    #: set in the process's environment on top of :func:`child_env` (e.g. ``KERAS_BACKEND``)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    key: str
    label: str
    returncode: int | None
    data: dict[str, Any] | None
    stderr_tail: str
    wall_seconds: float
    pid: int | None
    interrupted: bool = False

    @property
    def error(self) -> str | None:
        """Why there is no usable result: the process's own error, or how it died and its stderr tail."""
        if self.interrupted:
            return "interrupted before it finished"
        if self.data is not None:
            err = self.data.get("error")
            return str(err) if err else None
        how = describe_returncode(self.returncode)
        tail = self.stderr_tail.strip()
        return f"the process {how} without a result" + (f"; its stderr ends with:\n{tail}" if tail else "")


def describe_returncode(rc: int | None) -> str:
    if rc is None:
        return "did not finish"
    if rc < 0:
        import signal

        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}"
    return f"exited with status {rc}"


class Reporter(Protocol):
    def started(self, job: Job) -> None: ...

    def advanced(self, job: Job, done: int, total: int) -> None: ...

    def finished(self, job: Job, result: JobResult) -> None: ...


class PlainReporter:
    """One line per finished job on ``stream``: for logs and pipes."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr

    def started(self, job: Job) -> None:
        pass

    def advanced(self, job: Job, done: int, total: int) -> None:
        pass

    def finished(self, job: Job, result: JobResult) -> None:
        self.done += 1
        status = "done" if result.error is None else "FAILED"
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(
                f"closuretrace: [{self.done}/{self.total}] {job.label}: {status} in {result.wall_seconds:.1f} s\n"
            )
            self.stream.flush()


class RichReporter:
    """A ``rich`` progress display on stderr: the overall bar and one bar per running job."""

    def __init__(self, total: int, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.overall = self.progress.add_task("closuretrace compare", total=total)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def started(self, job: Job) -> None:
        self.tasks[job.key] = self.progress.add_task(f"  {job.label}", total=job.total)

    def advanced(self, job: Job, done: int, total: int) -> None:
        task = self.tasks.get(job.key)
        if task is not None:
            self.progress.update(task, completed=done, total=total)

    def finished(self, job: Job, result: JobResult) -> None:
        task = self.tasks.pop(job.key, None)
        if task is not None:
            self.progress.remove_task(task)
        status = "[green]done[/]" if result.error is None else "[bold red]FAILED[/]"
        self.progress.console.print(f"  {job.label}: {status} in {result.wall_seconds:.1f} s", highlight=False)
        self.progress.advance(self.overall)


@contextlib.contextmanager
def reporter_for(total: int, quiet: bool = False, stream: IO[str] | None = None) -> Iterator[Reporter]:
    """Rich on a terminal, plain lines otherwise, nothing with ``quiet``."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        yield _Silent()
        return
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty() and os.environ.get("TERM") != "dumb":
        with RichReporter(total) as rich_reporter:
            yield rich_reporter
        return
    yield PlainReporter(total, stream)


class _Silent:
    def started(self, job: Job) -> None:
        pass

    def advanced(self, job: Job, done: int, total: int) -> None:
        pass

    def finished(self, job: Job, result: JobResult) -> None:
        pass


def child_env() -> dict[str, str]:
    """The environment for a job: ours, TensorFlow's C++ log quiet, and closuretrace importable."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    import site

    from closuretrace._paths import PACKAGE_DIR

    src = Path(PACKAGE_DIR).resolve().parent
    site_dirs = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    # A source checkout (run without installing) needs its src/ on the path; an installed closuretrace is found
    # anyway, and putting site-packages ahead of the standard library could shadow it.
    if src not in site_dirs and str(src) not in parts:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *parts])
    return env


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen[str]
    out: Path
    err: IO[str]
    t0: float
    reader: threading.Thread


def _read_progress(job: Job, stream: IO[str], events: queue.Queue[tuple[str, int, int]]) -> None:
    try:
        for line in stream:
            if line.startswith(PROGRESS_PREFIX):
                try:
                    done, total = (int(x) for x in line[len(PROGRESS_PREFIX):].split()[:2])
                except ValueError:
                    continue
                events.put((job.key, done, total))
    except (OSError, ValueError):
        pass


def _tail(fh: IO[str]) -> str:
    try:
        fh.flush()
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 4 * STDERR_TAIL))
        text = fh.read()
    except (OSError, ValueError):
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines)[-STDERR_TAIL:]


def run_jobs(
    jobs: Sequence[Job],
    n_jobs: int,
    reporter: Reporter,
    workdir: str | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run ``jobs``, at most ``n_jobs`` at once, most expensive first; results in the order of ``jobs``.

    Ctrl-C terminates the running processes and returns what finished; the others are ``interrupted``.
    """
    order = sorted(range(len(jobs)), key=lambda i: (-jobs[i].weight, i))
    pending = [jobs[i] for i in order]
    running: dict[str, _Running] = {}
    results: dict[str, JobResult] = {}
    events: queue.Queue[tuple[str, int, int]] = queue.Queue()
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="closuretrace-compare-", dir=workdir) as tmp:
        try:
            while pending or running:
                while pending and len(running) < max(1, n_jobs):
                    job = pending.pop(0)
                    running[job.key] = _start(job, tmp, env, events)
                    reporter.started(job)
                _drain(events, running, reporter, timeout=0.1)
                for key in [k for k, r in running.items() if r.proc.poll() is not None]:
                    result = _collect(running.pop(key))
                    results[key] = result
                    _drain(events, running, reporter, timeout=0)
                    reporter.finished(result_job(jobs, key), result)
                    if on_result is not None:
                        on_result(result)
        except KeyboardInterrupt:
            for r in running.values():
                _stop(r)
            for key, r in running.items():
                res = _collect(r)
                res.interrupted = True
                results[key] = res
            for job in pending:
                results[job.key] = JobResult(job.key, job.label, None, None, "", 0.0, None, interrupted=True)
            raise _Interrupted([results[j.key] for j in jobs]) from None
    return [results[j.key] for j in jobs]


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_jobs`, carrying the results so far (the unfinished ones ``interrupted``)."""

    def __init__(self, results: list[JobResult]) -> None:
        super().__init__()
        self.results = results


Interrupted = _Interrupted


def result_job(jobs: Sequence[Job], key: str) -> Job:
    return next(j for j in jobs if j.key == key)


def _start(job: Job, tmp: str, env: dict[str, str], events: queue.Queue[tuple[str, int, int]]) -> _Running:
    safe = "".join(ch if ch.isalnum() else "_" for ch in job.key)
    out = Path(tmp) / f"{safe}.json"
    err = open(Path(tmp) / f"{safe}.stderr", "w+", encoding="utf-8", errors="replace")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", job.module, *job.args, "--out", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        env={**env, **job.env} if job.env else env,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    try:
        assert proc.stdout is not None
        reader = threading.Thread(target=_read_progress, args=(job, proc.stdout, events), daemon=True)
        reader.start()
        return _Running(job, proc, out, err, time.perf_counter(), reader)
    except BaseException:  # Ctrl-C before the caller holds the process: no worker may outlive us
        proc.kill()
        proc.wait()
        err.close()
        raise


def _drain(
    events: queue.Queue[tuple[str, int, int]], running: dict[str, _Running], reporter: Reporter, timeout: float
) -> None:
    try:
        key, done, total = events.get(timeout=timeout) if timeout > 0 else events.get_nowait()
    except queue.Empty:
        return
    while True:
        r = running.get(key)
        if r is not None:
            reporter.advanced(r.job, done, total)
        try:
            key, done, total = events.get_nowait()
        except queue.Empty:
            return


def _collect(r: _Running) -> JobResult:
    rc = r.proc.wait()
    wall = time.perf_counter() - r.t0
    r.reader.join(timeout=5)
    if r.proc.stdout is not None:
        with contextlib.suppress(OSError):
            r.proc.stdout.close()
    data: dict[str, Any] | None = None
    try:
        loaded = json.loads(r.out.read_text(encoding="utf-8"))
        data = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        data = None
    tail = _tail(r.err)
    with contextlib.suppress(OSError):
        r.err.close()
    return JobResult(r.job.key, r.job.label, rc, data, tail, wall, r.proc.pid)


def _stop(r: _Running) -> None:
    """Terminate one of our own children (by its handle), then kill it if it does not go."""
    if r.proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        r.proc.terminate()
    try:
        r.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            r.proc.kill()
