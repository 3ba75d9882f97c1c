"""pytest plugin: a test fails when closures it made stay alive or memory grows per cycle.

Registered through the ``pytest11`` entry point ``closuretrace`` (``-p no:closuretrace`` turns it off). It
records only the tests that ask for it, so every other test runs exactly as without it:

* ``@pytest.mark.closuretrace(max_alive_closures=0, max_rss_growth="2 MiB", max_object_growth=500, warmup=1)``
  sets limits (their meaning: :mod:`closuretrace.checks`); a test that breaks one fails with the limits broken
  and the summary ``closuretrace profile`` prints (verdicts, closures by factory, what keeps them alive);
* the ``closuretrace`` fixture ends cycles explicitly (``with closuretrace.cycle(): ...``); Keras ``fit()``
  ends one by itself, and with pytest-benchmark every timed round does (the first
  :data:`BENCHMARK_MAX_CYCLES` rounds; the verdict goes into ``benchmark.extra_info["closuretrace"]``);
* ``--closuretrace`` (ini ``closuretrace = true``) records every test; ``--closuretrace-report PATH`` (ini
  ``closuretrace_report``) writes every recorded test, ranked by growth, as JSON, Markdown or HTML.

How a test is run: for a recorded test the plugin runs pytest's own protocol (setup, call, teardown) without
logging, starts a profiler when the test function starts (fixture setup is not measured), and checks the
limits after teardown, so what a function-scoped fixture held is gone by then. A broken limit turns the
*call* report into a failure (the test shows as FAILED, not as an error in teardown); then the reports are
logged as usual. pytest-rerunfailures does the same; the two plugins cannot both run one test.

With pytest-xdist each worker records its own tests; every result travels to the controller inside the call
report's ``user_properties`` (``("closuretrace", {...})``, plain data) and the controller writes the report.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
import types
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy
import pytest
from _pytest.runner import runtestprotocol

from closuretrace.checks import (
    LIMIT_ARGS,
    Check,
    Limits,
    MarkerError,
    RecordedTest,
    RunReport,
    evaluate,
    failure_text,
    parse_limits,
)
from closuretrace.profiler import ProfileOptions, Profiler

if TYPE_CHECKING:
    from closuretrace.session import Session

MARKER = "closuretrace"
FIXTURE = "closuretrace"
#: ``report.user_properties`` entry that carries a :class:`~closuretrace.checks.RecordedTest` as a dict.
PROPERTY = "closuretrace"
#: A benchmark's rounds that end a cycle. Every probe is a full garbage collection and a heap census (1 to
#: 100 ms), and pytest-benchmark runs up to ``--benchmark-max-time`` worth of rounds (thousands for a fast
#: function): after this many the rounds run unprobed. 10 cycles give the slope 9 points after a warm-up of 1.
BENCHMARK_MAX_CYCLES = 10

_T = TypeVar("_T")
_FunctionType = types.FunctionType

hookspec = pluggy.HookspecMarker("pytest")


class ClosuretraceHookSpecs:
    """The plugin's own hook, for a ``conftest.py`` or another plugin that wants the sessions."""

    @staticmethod
    @hookspec
    def pytest_closuretrace_recorded(item: pytest.Item, session: Session, checks: list[Check]) -> None:
        """Called after a recorded test's teardown, once its limits are checked and before its reports are
        logged. ``session`` is the test's :class:`~closuretrace.session.Session` (save it with
        ``closuretrace.renderers.render_for_path``); ``checks`` has one entry per limit of the marker."""


def resolve_setting(cli: _T | None, ini: _T | None, default: _T) -> _T:
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


# -- the profiler of one test -----------------------------------------------------------------------------------


def _made_by_test(prof: Profiler, obj: Any) -> bool:
    """Whether ``obj``, alive after teardown, counts for ``max_alive_closures``: a closure (a function with
    captured variables) the test made. A module-level function or a library's loss passed to ``compile`` lives
    as long as its module; it is listed, never counted."""
    return type(obj) is types.FunctionType and obj.__closure__ is not None and not prof.heap.is_baseline(obj)


def _not_counted(prof: Profiler) -> set[int]:
    """Serials of watched callables alive now that ``max_alive_closures`` does not count."""
    out: set[int] = set()
    for rec, obj in prof.registry.alive():
        if not _made_by_test(prof, obj):
            out.add(rec.serial)
        del obj
    return out


# -- the fixture ----------------------------------------------------------------------------------------------


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


@pytest.fixture(name=FIXTURE)
def closuretrace_fixture(request: pytest.FixtureRequest) -> ClosuretraceFixture:
    """Cycles and the profiler in a test: ``with closuretrace.cycle(): ...``; limits come from the marker."""
    state: _TestState | None = request.node.stash.get(_STATE, None)
    if state is None:  # another plugin ran the test protocol (pytest-rerunfailures, say)
        raise pytest.UsageError(
            f"closuretrace: {request.node.nodeid} is not being recorded: another plugin runs its test protocol"
        )
    return state.handle


# -- pytest-benchmark -----------------------------------------------------------------------------------------


class _BenchmarkRounds:
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
    def install(cls, bench: Any, max_cycles: int = BENCHMARK_MAX_CYCLES) -> _BenchmarkRounds | None:
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

        def finite(x: float) -> float | None:
            return x if x == x and x not in (float("inf"), float("-inf")) else None

        return {
            "cycles": len(session.cycles),
            "warmup": session.warmup,
            "rounds_probed": self.probed,
            "iterations_per_round": self.iterations,
            "per_cycle": {v.metric: finite(v.slope_per_cycle) for v in session.verdicts},
            "ci95": {v.metric: [finite(v.ci_low), finite(v.ci_high)] for v in session.verdicts},
            "leaks": [v.metric for v in session.leaks()],
            "closures_alive": alive,
            "limits_broken": [c.limit for c in checks if c.failed],
        }


# -- the plugin -----------------------------------------------------------------------------------------------


@dataclass
class _TestState:
    handle: ClosuretraceFixture
    limits: Limits
    error: str | None = None
    profiler: Profiler | None = None
    bench: _BenchmarkRounds | None = None


_STATE = pytest.StashKey[_TestState]()


def _failure_repr(item: pytest.Item, text: str) -> Any:
    """A longrepr like ``pytest.fail(text, pytrace=False)`` makes: the message only, and ``-rf`` shows its
    first line."""
    try:
        raise pytest.fail.Exception(text, pytrace=False)
    except pytest.fail.Exception:
        excinfo = pytest.ExceptionInfo.from_current()
    return item.repr_failure(excinfo)


class ClosuretracePlugin:
    """Registered once per pytest process by :func:`pytest_configure` (workers included)."""

    def __init__(self, config: pytest.Config, record_all: bool, report_path: Path | None) -> None:
        self.config = config
        self.record_all = record_all
        self.report_path = report_path
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.worker: str | None = workerinput.get("workerid") if isinstance(workerinput, dict) else None
        self.recorded: list[RecordedTest] = []
        self.report_written: Path | None = None
        self.report_error: str | None = None
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def wants(self, item: pytest.Item) -> bool:
        """Whether ``item`` is recorded: ``--closuretrace``, the marker, or the fixture (directly or not)."""
        return (
            self.record_all
            or item.get_closest_marker(MARKER) is not None
            or FIXTURE in getattr(item, "fixturenames", ())
        )

    # -- running one test --------------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        if not self.wants(item):
            return None  # pytest's own protocol: nothing of ours runs
        state = self._prepare(item)
        item.stash[_STATE] = state
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        try:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            t0 = time.perf_counter()
            try:
                self._conclude(item, state, reports)
            except Exception as exc:  # a bug of ours must not end the run nor pass a limit unchecked
                self._internal_error(item, state, reports, exc)
            # The analysis ran after teardown: count it there, so --durations shows what recording cost.
            reports[-1].duration += time.perf_counter() - t0
        finally:
            prof = state.profiler
            if prof is not None and prof.session is None:  # interrupted, or a bug of ours: stop recording
                with contextlib.suppress(Exception):
                    prof.finish(outcome="interrupted", exit_code=130)
            state.handle._profiler = None
            state.profiler = None
            del item.stash[_STATE]
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _prepare(self, item: pytest.Item) -> _TestState:
        try:
            limits = parse_limits((m.args, m.kwargs) for m in item.iter_markers(MARKER))
        except MarkerError as exc:
            return _TestState(
                handle=ClosuretraceFixture(item.nodeid, Limits()),
                limits=Limits(),
                error=f"closuretrace marker: {exc} (test {item.nodeid})",
            )
        return _TestState(handle=ClosuretraceFixture(item.nodeid, limits), limits=limits)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        state = item.stash.get(_STATE, None)
        if state is not None and state.error:
            # A misused marker is this test's problem: its setup errors with one line, the run goes on.
            pytest.fail(state.error, pytrace=False)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        state = item.stash.get(_STATE, None)
        if state is None or state.error:
            return (yield)
        self._start(item, state)
        try:
            return (yield)
        finally:
            if state.bench is not None:
                state.bench.remove()

    def _start(self, item: pytest.Item, state: _TestState) -> None:
        from closuretrace.instrument.state import active

        if active() is not None:
            pytest.fail(
                f"closuretrace: cannot record {item.nodeid}: another closuretrace Profiler is already recording",
                pytrace=False,
            )
        limits = state.limits
        options = ProfileOptions(warmup=limits.warmup, thresholds=limits.thresholds())
        prof = Profiler(options, argv=[item.nodeid], baseline=True)
        funcargs = getattr(item, "funcargs", None) or {}
        bench = funcargs.get("benchmark")
        if bench is not None:
            state.bench = _BenchmarkRounds.install(bench)
        prof.start()
        state.profiler = prof
        state.handle._profiler = prof

    def _conclude(self, item: pytest.Item, state: _TestState, reports: list[pytest.TestReport]) -> None:
        prof = state.profiler
        call = next((r for r in reports if r.when == "call"), None)
        if prof is None or call is None:
            return  # setup failed or the marker was misused: nothing was recorded
        limits = state.limits
        if call.passed:
            outcome, code, error = "completed", 0, None
        elif call.skipped:
            outcome, code, error = "completed", 0, "skipped"
        else:
            outcome, code, error = "exception", 1, (call.longreprtext.strip().splitlines() or ["failed"])[-1][:300]
        prof.adopt_closures()  # after a full collection: what the teardown released is gone
        not_counted = _not_counted(prof)
        over = False
        if limits.max_alive_closures is not None:
            made = sum(1 for rec in prof.registry.records if rec.alive_at_end and rec.serial not in not_counted)
            over = made > limits.max_alive_closures
        session = prof.finish(outcome, code, error, alive_chain_skip=not_counted if over else None)
        session.kind = "test"
        session.run.command = "pytest"
        bench = state.bench
        unmeasurable = None
        if bench is not None and bench.disabled:
            unmeasurable = "the benchmark ran its function once (benchmarks are disabled)"
        checks = evaluate(session, limits, skip_serials=not_counted, growth_unmeasurable=unmeasurable)
        failed = [c for c in checks if c.failed]
        result: str = call.outcome
        if failed and call.passed:
            text = failure_text(checks, session)
            if hasattr(call, "wasxfail"):  # expected to fail, and it did: XFAIL
                call.outcome = "skipped"
                result = "xfailed"
            else:
                call.outcome = "failed"
                call.longrepr = _failure_repr(item, text)
                result = "broke limits"
        record = RecordedTest.build(
            item.nodeid, result, session, limits, checks, skip_serials=not_counted, worker=self.worker
        )
        if bench is not None and bench.extra_info is not None and not bench.disabled:
            bench.extra_info["closuretrace"] = bench.summary(session, checks, record.closures_alive)
        call.user_properties.append((PROPERTY, record.to_dict()))
        state.handle.session = session
        state.handle.checks = checks
        item.ihook.pytest_closuretrace_recorded(item=item, session=session, checks=checks)

    def _internal_error(
        self, item: pytest.Item, state: _TestState, reports: list[pytest.TestReport], exc: Exception
    ) -> None:
        message = f"closuretrace: internal error while checking {item.nodeid}: {type(exc).__name__}: {exc}"
        call = next((r for r in reports if r.when == "call"), None)
        if call is not None and call.passed and state.limits.has_limits:
            call.outcome = "failed"
            call.longrepr = _failure_repr(item, message + " (its limits could not be checked; a closuretrace bug)")
        else:
            item.warn(pytest.PytestWarning(message))

    # -- the run report ----------------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker or not report.user_properties:
            return
        self.recorded.extend(iter_recorded(report))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or self.report_path is None:
            return
        from closuretrace.renderers.pytest_report import render_for_path
        from closuretrace.session import write_atomic

        report = RunReport(
            tests=self.recorded,
            started_at=self.started_at,
            duration_s=round(time.perf_counter() - self._t0, 3),
            argv=[str(a) for a in self.config.invocation_params.args],
        )
        try:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_written = write_atomic(self.report_path, render_for_path(report, self.report_path))
        except OSError as exc:
            self.report_error = f"cannot write {self.report_path}: {exc.strerror or exc}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or (not self.recorded and self.report_path is None):
            return
        broken = [t for t in self.recorded if t.failed_checks]
        terminalreporter.write_sep("=", "closuretrace")
        line = f"{len(self.recorded)} test{'s' if len(self.recorded) != 1 else ''} recorded"
        line += f", {len(broken)} broke {'their' if len(broken) != 1 else 'its'} limits" if broken else ""
        terminalreporter.write_line(line)
        for t in broken:
            terminalreporter.write_line(f"  {t.nodeid}: {', '.join(str(c['limit']) for c in t.failed_checks)}")
        if self.report_written is not None:
            terminalreporter.write_line(f"closuretrace report written to {self.report_written}")
        if self.report_error is not None:
            terminalreporter.write_line(f"closuretrace: {self.report_error}", red=True)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        lines = []
        if self.record_all:
            lines.append("closuretrace: recording every test")
        if self.report_path is not None:
            lines.append(f"closuretrace report: {self.report_path}")
        return lines


# -- registration ---------------------------------------------------------------------------------------------

_MARKER_HELP = (
    "closuretrace(max_alive_closures=None, max_rss_growth=None, max_object_growth=None, warmup=1): record the "
    "test and fail it when a limit breaks: " + "; ".join(f"{k}: {v}" for k, v in LIMIT_ARGS.items())
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(ClosuretraceHookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("closuretrace", "closuretrace: closures alive and memory growth per cycle")
    # Defaults are None, never False or a path: "not given" must stay distinguishable from a value so that an
    # ini setting applies when the option is not typed (see resolve_setting).
    group.addoption(
        "--closuretrace", action="store_const", const=True, default=None, dest="closuretrace",
        help="record every test (not only those with the closuretrace marker or fixture). "
        "ini: closuretrace = true",
    )
    group.addoption(
        "--no-closuretrace", action="store_const", const=False, dest="closuretrace",
        help="record only marked tests and tests using the closuretrace fixture, whatever the ini file says",
    )
    group.addoption(
        "--closuretrace-report", metavar="PATH", default=None, dest="closuretrace_report",
        help="write every recorded test, ranked by growth, to PATH (.json, .md or .html); '' for none. "
        "ini: closuretrace_report = PATH (relative to the ini file)",
    )
    parser.addini("closuretrace", type="bool", default=False, help="record every test (like --closuretrace)")
    parser.addini(
        "closuretrace_report", type="string", default="",
        help="run report path, .json/.md/.html, relative to the ini file (like --closuretrace-report)",
    )


def _report_path(config: pytest.Config) -> Path | None:
    cli: str | None = config.getoption("closuretrace_report")
    ini = str(config.getini("closuretrace_report") or "")
    value = resolve_setting(cli, ini, None)
    if not value:
        return None
    if cli is not None:
        base = config.invocation_params.dir
        origin = "--closuretrace-report"
    else:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        origin = "closuretrace_report (ini)"
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else Path(base) / path
    from closuretrace.renderers import UnknownFormatError, format_for_path

    try:
        format_for_path(path)
    except UnknownFormatError as exc:
        raise pytest.UsageError(f"closuretrace: {origin}: {exc}") from None
    if path.is_dir():
        raise pytest.UsageError(f"closuretrace: {origin}: {path} is a directory")
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    record_all = bool(resolve_setting(config.getoption("closuretrace"), config.getini("closuretrace"), False))
    plugin = ClosuretracePlugin(config, record_all, _report_path(config))
    config.pluginmanager.register(plugin, "closuretrace-manager")


def iter_recorded(report: pytest.TestReport) -> Iterator[RecordedTest]:
    """The :class:`~closuretrace.checks.RecordedTest` a report carries (the call report of a recorded test)."""
    for entry in report.user_properties:
        if len(entry) == 2 and entry[0] == PROPERTY and isinstance(entry[1], dict):
            yield RecordedTest.from_dict(entry[1])
