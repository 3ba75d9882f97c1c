"""Recording one test under the profiler: the part of the pytest plugin that is not pytest glue.

:class:`TestRecording` starts a :class:`~closuretrace.Profiler` when the test function starts and, after its
teardown, finishes it into a judged session, checks the marker's limits against it
(:mod:`closuretrace.checks`) and builds the :class:`~closuretrace.session.pytest_run.RecordedTest` that goes
into the run report. :class:`ClosuretraceFixture` is what the ``closuretrace`` fixture gives a test;
:class:`BenchmarkRounds` makes each pytest-benchmark round end a cycle. The plugin
(:mod:`closuretrace.pytest_plugin`) only wires these to pytest's hooks.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from closuretrace.checks import Check, Limits, evaluate, failure_text, record_test
from closuretrace.outcome import Outcome
from closuretrace.profiler import ProfileOptions, Profiler
from closuretrace.session import Session
from closuretrace.session.pytest_run import RecordedTest, RunReport
from closuretrace.units import finite_or_none

__all__ = [
    "BENCHMARK_MAX_CYCLES",
    "BenchmarkRounds",
    "ClosuretraceFixture",
    "RunRecords",
    "TestRecording",
    "not_counted",
    "outcome_of_test",
    "report_path",
    "resolve_setting",
]

#: A benchmark's rounds that end a cycle. Every probe is a full garbage collection and a heap census (1 to
#: 100 ms), and pytest-benchmark runs up to ``--benchmark-max-time`` worth of rounds (thousands for a fast
#: function): after this many the rounds run unprobed. 10 cycles give the slope 9 points after a warm-up of 1.
BENCHMARK_MAX_CYCLES = 10

_V = TypeVar("_V")


def made_by_test(prof: Profiler, obj: Any) -> bool:
    """Whether ``obj``, alive after teardown, counts for ``max_alive_closures``: a closure (a function with
    captured variables) the test made. A module-level function or a library's loss passed to ``compile`` lives
    as long as its module; it is listed, never counted."""
    return type(obj) is types.FunctionType and obj.__closure__ is not None and not prof.heap.is_baseline(obj)


def not_counted(prof: Profiler) -> set[int]:
    """Serials of watched callables alive now that ``max_alive_closures`` does not count."""
    out: set[int] = set()
    for rec, obj in prof.registry.alive():
        if not made_by_test(prof, obj):
            out.add(rec.serial)
        del obj
    return out


class ClosuretraceFixture:
    """What the ``closuretrace`` fixture gives a test.

    While the test function runs: :meth:`cycle` / :meth:`end_cycle` end cycles and :attr:`profiler` is the live
    :class:`~closuretrace.Profiler`. After the test (its teardown included): :attr:`session` and :attr:`checks`.
    """

    def __init__(self, nodeid: str, limits: Limits) -> None:
        self.nodeid = nodeid
        self.limits = limits
        self._profiler: Profiler | None = None
        #: the recorded session, set after teardown (``None`` until then)
        self.session: Session | None = None
        #: one per limit, set with :attr:`session`
        self.checks: list[Check] = []

    @property
    def profiler(self) -> Profiler:
        """The profiler recording this test; only while the test function (or its teardown) runs."""
        if self._profiler is None:
            when = "after the test" if self.session is not None else "before the test function starts"
            raise RuntimeError(
                f"closuretrace: {self.nodeid} is recorded from the start of the test function to the end of its "
                f"teardown; the profiler is not available {when}"
            )
        return self._profiler

    def cycle(self, label: str | None = None) -> contextlib.AbstractContextManager[None]:
        """``with closuretrace.cycle(): ...``: the block is one cycle; the probes run when it exits."""
        return self.profiler.cycle(label)

    def end_cycle(self, label: str | None = None) -> None:
        """End the current cycle now (what a Keras ``fit()`` does by itself)."""
        self.profiler.end_cycle(label)

    @property
    def cycles(self) -> int:
        """Cycles ended so far."""
        prof = self._profiler
        if prof is not None:
            return len(prof.cycles)
        return len(self.session.cycles) if self.session is not None else 0

    def __repr__(self) -> str:
        return f"<closuretrace fixture of {self.nodeid}: {self.cycles} cycles>"


class BenchmarkRounds:
    """Makes each timed round of a ``benchmark`` fixture end a cycle, after the round's timer stopped.

    pytest-benchmark calls ``stats.update(duration)`` once per round, outside the timed region, in both
    ``benchmark(fn)`` and ``benchmark.pedantic(...)``; the hook wraps the ``update`` of the stats object that
    ``_make_stats`` creates. Nothing is changed on the class, and both wrappers are removed after the test.
    """

    def __init__(self, bench: Any, max_cycles: int) -> None:
        self.extra_info: dict[str, Any] | None = getattr(bench, "extra_info", None)
        self.disabled = bool(getattr(bench, "disabled", False))
        self.max_cycles = max_cycles
        self.rounds = 0
        self.probed = 0
        self.iterations: int | None = None
        self._bench: Any = bench
        self._stats: Any = None

    @classmethod
    def install(cls, bench: Any, max_cycles: int = BENCHMARK_MAX_CYCLES) -> BenchmarkRounds | None:
        make_stats = getattr(bench, "_make_stats", None)
        if not callable(make_stats):
            return None  # not pytest-benchmark's fixture, or a version without _make_stats
        hook = cls(bench, max_cycles)

        def _make_stats(iterations: int) -> Any:
            stats = make_stats(iterations)
            hook.wrap(stats, iterations)
            return stats

        bench._make_stats = _make_stats
        return hook

    def wrap(self, stats: Any, iterations: int) -> None:
        self.iterations = iterations
        update = stats.update
        hook = self

        def probed_update(duration: float) -> None:
            update(duration)
            hook.after_round()

        stats.update = probed_update
        self._stats = stats

    def after_round(self) -> None:
        from closuretrace.instrument.state import STATE

        self.rounds += 1
        prof = STATE.profiler
        if prof is not None and self.probed < self.max_cycles:
            self.probed += 1
            prof.end_cycle(f"round {self.rounds}")

    def remove(self) -> None:
        if self._bench is not None:
            vars(self._bench).pop("_make_stats", None)
            self._bench = None
        if self._stats is not None:
            vars(self._stats).pop("update", None)
            self._stats = None

    def summary(self, session: Session, checks: list[Check], alive: int) -> dict[str, Any]:
        """What goes into ``benchmark.extra_info["closuretrace"]``: plain numbers, JSON-safe."""

        return {
            "cycles": len(session.cycles),
            "warmup": session.warmup,
            "rounds_probed": self.probed,
            "iterations_per_round": self.iterations,
            "per_cycle": {v.metric: finite_or_none(v.slope_per_cycle) for v in session.verdicts},
            "ci95": {v.metric: [finite_or_none(v.ci_low), finite_or_none(v.ci_high)] for v in session.verdicts},
            "leaks": [v.metric for v in session.leaks()],
            "closures_alive": alive,
            "limits_broken": [c.limit for c in checks if c.failed],
        }


@dataclass
class RecordedResult:
    """What one recorded test came to: its session, one check per limit, the run report's record, and the
    failure text when a limit broke (``None`` otherwise)."""

    session: Session
    checks: list[Check]
    record: RecordedTest
    failure: str | None = None


@dataclass
class TestRecording:
    """One test, recorded from the start of its function to the end of its teardown."""

    nodeid: str
    limits: Limits
    handle: ClosuretraceFixture = field(init=False)
    profiler: Profiler | None = None
    bench: BenchmarkRounds | None = None

    __test__ = False  # not a test class, whatever pytest's name pattern says

    def __post_init__(self) -> None:
        self.handle = ClosuretraceFixture(self.nodeid, self.limits)

    def start(self, benchmark: Any = None) -> None:
        """Start recording (the test function is about to run); ``benchmark``: its pytest-benchmark fixture."""
        options = ProfileOptions(warmup=self.limits.warmup, thresholds=self.limits.thresholds())
        prof = Profiler(options, argv=[self.nodeid], baseline=True)
        if benchmark is not None:
            self.bench = BenchmarkRounds.install(benchmark)
        prof.start()
        self.profiler = prof
        self.handle._profiler = prof

    def end_call(self) -> None:
        """The test function returned: stop ending cycles on benchmark rounds."""
        if self.bench is not None:
            self.bench.remove()

    def finish(self, outcome: Outcome, result: str, worker: str | None = None) -> RecordedResult | None:
        """After teardown: judge the recording, check the limits, build the record (``None``: not recorded).

        ``result`` is the test's own result (``passed``, ``failed``, ``skipped``); a passing test that broke a
        limit is recorded as ``broke limits`` (the caller decides between that and XFAIL)."""
        prof = self.profiler
        if prof is None:
            return None
        limits = self.limits
        prof.adopt_closures()  # after a full collection: what the teardown released is gone
        skip = not_counted(prof)
        over = False
        if limits.max_alive_closures is not None:
            made = sum(1 for rec in prof.registry.records if rec.alive_at_end and rec.serial not in skip)
            over = made > limits.max_alive_closures
        session = prof.finish(outcome, alive_chain_skip=skip if over else None)
        session.kind = "test"
        session.run.command = "pytest"
        unmeasurable = None
        if self.bench is not None and self.bench.disabled:
            unmeasurable = "the benchmark ran its function once (benchmarks are disabled)"
        checks = evaluate(session, limits, skip_serials=skip, growth_unmeasurable=unmeasurable)
        failure = failure_text(checks, session) if any(c.failed for c in checks) else None
        if failure is not None and result == "passed":
            result = "broke limits"
        record = record_test(self.nodeid, result, session, limits, checks, skip_serials=skip, worker=worker)
        bench = self.bench
        if bench is not None and bench.extra_info is not None and not bench.disabled:
            bench.extra_info["closuretrace"] = bench.summary(session, checks, record.closures_alive)
        self.handle.session = session
        self.handle.checks = checks
        return RecordedResult(session, checks, record, failure)

    def abandon(self, outcome: Outcome) -> None:
        """Stop recording without a verdict (interrupted, or a bug of ours); hooks are always removed."""
        prof = self.profiler
        if prof is not None and prof.session is None:
            with contextlib.suppress(Exception):
                prof.finish(outcome)
        self.handle._profiler = None
        self.profiler = None


def outcome_of_test(result: str, longrepr: str = "") -> Outcome:
    """A test's call as a program's ending: passed or skipped completed; failed raised (its last line)."""
    if result == "passed":
        return Outcome("completed", 0, None)
    if result == "skipped":
        return Outcome("completed", 0, "skipped")
    return Outcome("exception", 1, (longrepr.strip().splitlines() or ["failed"])[-1][:300])



class RunRecords:
    """Every recorded test of one pytest run (the controller's), and the run report written from them."""

    def __init__(self) -> None:
        self.recorded: list[RecordedTest] = []
        self.written: Path | None = None
        self.error: str | None = None
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def report(self, argv: list[str]) -> RunReport:
        """The run report of the tests recorded so far."""
        from closuretrace.analysis.verdicts import MIN_CYCLES

        return RunReport(
            tests=self.recorded,
            started_at=self.started_at,
            duration_s=round(time.perf_counter() - self._t0, 3),
            argv=argv,
            min_cycles=MIN_CYCLES,
        )

    def write(self, path: Path, argv: list[str]) -> None:
        """Write the run report to ``path`` (format by extension); a failure is kept in :attr:`error`."""
        from closuretrace.renderers.pytest_report import render
        from closuretrace.reports import ReportError, write_reports

        report = self.report(argv)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.written = write_reports([path], lambda fmt: render(report, fmt))[0]
        except (OSError, ReportError) as exc:
            self.error = f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}"

    def step_summary(self, argv: list[str], enabled: bool) -> None:
        """Append the run report's Markdown to ``$GITHUB_STEP_SUMMARY`` (GitHub Actions), when tests were recorded."""
        if not self.recorded:
            return
        from closuretrace.renderers.pytest_report import render
        from closuretrace.reports import append_step_summary

        append_step_summary(render(self.report(argv), "markdown"), enabled=enabled)

    def summary_lines(self) -> list[str]:
        """The lines of the terminal summary: how many recorded, which broke their limits, the report."""
        broken = [t for t in self.recorded if t.failed_checks]
        line = f"{len(self.recorded)} test{'s' if len(self.recorded) != 1 else ''} recorded"
        line += f", {len(broken)} broke {'their' if len(broken) != 1 else 'its'} limits" if broken else ""
        lines = [line]
        lines += [f"  {t.nodeid}: {', '.join(str(c['limit']) for c in t.failed_checks)}" for t in broken]
        if self.written is not None:
            lines.append(f"closuretrace report written to {self.written}")
        return lines


def resolve_setting(cli: _V | None, ini: _V | None, default: _V) -> _V:
    """The one precedence rule for every setting: the command line, else the ini file, else the default.

    ``None`` means "not given" for both (and ``""`` for an ini string): command-line options default to
    ``None``, never to the default value, so an ini setting is not silently overridden by an option the user
    never typed.

    >>> resolve_setting("b.json", "a.json", None), resolve_setting(None, "a.json", None)
    ('b.json', 'a.json')
    >>> resolve_setting(None, "", None) is None
    True
    """
    if cli is not None:
        return cli
    if ini is not None and ini != "":
        return ini
    return default


def report_path(cli: str | None, ini: str, cwd: str | os.PathLike[str], inidir: str | os.PathLike[str]) -> Path | None:
    """The run report's path from ``--closuretrace-report`` (relative to ``cwd``) or the ini setting (relative
    to the ini file's directory); ``None`` for no report. ``ValueError`` (one line) for a path that cannot be
    a report."""
    from closuretrace.renderers import UnknownFormatError, format_for_path

    value = resolve_setting(cli, ini, None)
    if not value:
        return None
    base, origin = (cwd, "--closuretrace-report") if cli is not None else (inidir, "closuretrace_report (ini)")
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else Path(base) / path
    try:
        format_for_path(path)
    except UnknownFormatError as exc:
        raise ValueError(f"{origin}: {exc}") from None
    if path.is_dir():
        raise ValueError(f"{origin}: {path} is a directory")
    return path
