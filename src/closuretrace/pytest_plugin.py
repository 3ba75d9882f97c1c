"""pytest plugin: a test fails when closures it made stay alive or memory grows per cycle.

Registered through the ``pytest11`` entry point ``closuretrace`` (``-p no:closuretrace`` turns it off). It
records only the tests that ask for it, so every other test runs exactly as without it:

* ``@pytest.mark.closuretrace(max_alive_closures=0, max_rss_growth="2 MiB", max_object_growth=500, warmup=1)``
  sets limits (their meaning: :mod:`closuretrace.checks`); a test that breaks one fails with the limits broken
  and the summary ``closuretrace profile`` prints (verdicts, closures by factory, what keeps them alive);
* the ``closuretrace`` fixture ends cycles explicitly (``with closuretrace.cycle(): ...``); Keras ``fit()``
  ends one by itself, and with pytest-benchmark every timed round does (the first
  :data:`~closuretrace.testing.BENCHMARK_MAX_CYCLES` rounds; the verdict goes into
  ``benchmark.extra_info["closuretrace"]``);
* ``--closuretrace`` (ini ``closuretrace = true``) records every test; ``--closuretrace-report PATH`` (ini
  ``closuretrace_report``) writes every recorded test, ranked by growth, as JSON, Markdown or HTML.

How a test is run: for a recorded test the plugin runs pytest's own protocol (setup, call, teardown) without
logging, starts a profiler when the test function starts (fixture setup is not measured), and checks the
limits after teardown, so what a function-scoped fixture held is gone by then. A broken limit turns the
*call* report into a failure (the test shows as FAILED, not as an error in teardown); then the reports are
logged as usual. pytest-rerunfailures does the same; the two plugins cannot both run one test.

What recording a test means (the profiler, the checks, the record) lives in :mod:`closuretrace.testing`;
this module only wires it to pytest's hooks. With pytest-xdist each worker records its own tests; every result
travels to the controller inside the call
report's ``user_properties`` (``("closuretrace", {...})``, plain data) and the controller writes the report.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy
import pytest
from _pytest.runner import runtestprotocol

from closuretrace.checks import LIMIT_ARGS, Check, Limits, MarkerError, parse_limits
from closuretrace.outcome import INTERRUPTED
from closuretrace.session.pytest_run import RecordedTest
from closuretrace.testing import (
    ClosuretraceFixture,
    RunRecords,
    TestRecording,
    outcome_of_test,
    report_path,
    resolve_setting,
)

if TYPE_CHECKING:
    from closuretrace.session import Session

MARKER = "closuretrace"
FIXTURE = "closuretrace"
#: ``report.user_properties`` entry that carries a :class:`~closuretrace.session.pytest_run.RecordedTest` as a dict.
PROPERTY = "closuretrace"

_T = TypeVar("_T")

hookspec = pluggy.HookspecMarker("pytest")


class ClosuretraceHookSpecs:
    """The plugin's own hook, for a ``conftest.py`` or another plugin that wants the sessions."""

    @staticmethod
    @hookspec
    def pytest_closuretrace_recorded(item: pytest.Item, session: Session, checks: list[Check]) -> None:
        """Called after a recorded test's teardown, once its limits are checked and before its reports are
        logged. ``session`` is the test's :class:`~closuretrace.session.Session` (save it with
        ``closuretrace.renderers.render_for_path``); ``checks`` has one entry per limit of the marker."""


_STATE = pytest.StashKey[TestRecording]()
#: Set instead of a recording when the test's marker cannot be used: its setup fails with this line.
_MARKER_ERROR = pytest.StashKey[str]()


@pytest.fixture(name=FIXTURE)
def closuretrace_fixture(request: pytest.FixtureRequest) -> ClosuretraceFixture:
    """Cycles and the profiler in a test: ``with closuretrace.cycle(): ...``; limits come from the marker."""
    state: TestRecording | None = request.node.stash.get(_STATE, None)
    if state is None:  # another plugin ran the test protocol (pytest-rerunfailures, say)
        raise pytest.UsageError(
            f"closuretrace: {request.node.nodeid} is not being recorded: another plugin runs its test protocol"
        )
    return state.handle


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
        self.run = RunRecords()

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
        try:
            limits = parse_limits((m.args, m.kwargs) for m in item.iter_markers(MARKER))
        except MarkerError as exc:
            item.stash[_MARKER_ERROR] = f"closuretrace marker: {exc} (test {item.nodeid})"
            limits = Limits()
        rec = item.stash[_STATE] = TestRecording(item.nodeid, limits)
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        try:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            t0 = time.perf_counter()
            try:
                self._conclude(item, rec, reports)
            except Exception as exc:  # a bug of ours must not end the run nor pass a limit unchecked
                self._internal_error(item, rec, reports, exc)
            # The analysis ran after teardown: count it there, so --durations shows what recording cost.
            reports[-1].duration += time.perf_counter() - t0
        finally:
            rec.abandon(INTERRUPTED)  # interrupted, or a bug of ours: stop recording (no-op once finished)
            del item.stash[_STATE]
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        error = item.stash.get(_MARKER_ERROR, None)
        if error is not None:
            # A misused marker is this test's problem: its setup errors with one line, the run goes on.
            pytest.fail(error, pytrace=False)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        rec = item.stash.get(_STATE, None)
        if rec is None or _MARKER_ERROR in item.stash:
            return (yield)
        from closuretrace.instrument.state import active

        if active() is not None:
            pytest.fail(
                f"closuretrace: cannot record {item.nodeid}: another closuretrace Profiler is already recording",
                pytrace=False,
            )
        rec.start((getattr(item, "funcargs", None) or {}).get("benchmark"))
        try:
            return (yield)
        finally:
            rec.end_call()

    def _conclude(self, item: pytest.Item, rec: TestRecording, reports: list[pytest.TestReport]) -> None:
        call = next((r for r in reports if r.when == "call"), None)
        if rec.profiler is None or call is None:
            return  # setup failed or the marker was misused: nothing was recorded
        done = rec.finish(outcome_of_test(call.outcome, call.longreprtext), call.outcome, self.worker)
        if done is None:
            return
        if done.failure is not None and call.passed:
            if hasattr(call, "wasxfail"):  # expected to fail, and it did: XFAIL
                call.outcome = "skipped"
                done.record.outcome = "xfailed"
            else:
                call.outcome = "failed"
                call.longrepr = _failure_repr(item, done.failure)
        call.user_properties.append((PROPERTY, done.record.to_dict()))
        item.ihook.pytest_closuretrace_recorded(item=item, session=done.session, checks=done.checks)

    def _internal_error(
        self, item: pytest.Item, rec: TestRecording, reports: list[pytest.TestReport], exc: Exception
    ) -> None:
        message = f"closuretrace: internal error while checking {item.nodeid}: {type(exc).__name__}: {exc}"
        call = next((r for r in reports if r.when == "call"), None)
        if call is not None and call.passed and rec.limits.has_limits:
            call.outcome = "failed"
            call.longrepr = _failure_repr(item, message + " (its limits could not be checked; a closuretrace bug)")
        else:
            item.warn(pytest.PytestWarning(message))

    # -- the run report ----------------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_worker and report.user_properties:
            self.run.recorded.extend(iter_recorded(report))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        argv = [str(a) for a in self.config.invocation_params.args]
        if self.report_path is not None:
            self.run.write(self.report_path, argv)
        self.run.step_summary(argv, enabled=not self.config.getoption("closuretrace_no_step_summary"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or (not self.run.recorded and self.report_path is None):
            return
        terminalreporter.write_sep("=", "closuretrace")
        for line in self.run.summary_lines():
            terminalreporter.write_line(line)
        if self.run.error is not None:
            terminalreporter.write_line(f"closuretrace: {self.run.error}", red=True)

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
    group.addoption(
        "--closuretrace-no-step-summary", action="store_true", default=False, dest="closuretrace_no_step_summary",
        help="do not append the run report to $GITHUB_STEP_SUMMARY (GitHub Actions)",
    )
    parser.addini("closuretrace", type="bool", default=False, help="record every test (like --closuretrace)")
    parser.addini(
        "closuretrace_report", type="string", default="",
        help="run report path, .json/.md/.html, relative to the ini file (like --closuretrace-report)",
    )


def _report_path(config: pytest.Config) -> Path | None:
    cli: str | None = config.getoption("closuretrace_report")
    inidir = config.inipath.parent if config.inipath is not None else config.rootpath
    try:
        return report_path(cli, str(config.getini("closuretrace_report") or ""), config.invocation_params.dir, inidir)
    except ValueError as exc:
        raise pytest.UsageError(f"closuretrace: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    record_all = bool(resolve_setting(config.getoption("closuretrace"), config.getini("closuretrace"), False))
    plugin = ClosuretracePlugin(config, record_all, _report_path(config))
    config.pluginmanager.register(plugin, "closuretrace-manager")


def iter_recorded(report: pytest.TestReport) -> Iterator[RecordedTest]:
    """The :class:`~closuretrace.session.pytest_run.RecordedTest` a report carries (a recorded test's call)."""
    for entry in report.user_properties:
        if len(entry) == 2 and entry[0] == PROPERTY and isinstance(entry[1], dict):
            yield RecordedTest.from_dict(entry[1])
