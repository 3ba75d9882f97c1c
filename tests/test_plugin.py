"""The pytest plugin (``closuretrace.pytest_plugin``), run through real pytest sessions with ``pytester``.

Sessions that need a clean process (the heap, TensorFlow, pytest-benchmark, xdist workers) run in a subprocess;
configuration and usage errors run in-process, which is faster.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from closuretrace.checks import Limits, MarkerError, parse_limits
from closuretrace.renderers.pytest_report import render
from closuretrace.session.pytest_run import RecordedTest, RunReport
from closuretrace.testing import resolve_setting

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n 2`` these variables leak into the sessions run here: pytest-benchmark would then
    disable itself, believing it runs under xdist."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


LEAK_MODULE = """
import functools
import sys
import pytest
import closuretrace
from closuretrace.instrument.state import active

LEAKED = []
BEFORE = []
BLOBS = []

def make_closure(i):
    payload = [i] * 10
    def f():
        return payload
    return f

BEFORE.extend(make_closure(i) for i in range(3))   # alive before any test: never a test's leak


def helper(x):
    return x


@closuretrace.track
def lookup(i):  # watched, but a module-level function or a partial is not a closure the test made
    return helper if i % 2 else functools.partial(helper, i)


@pytest.fixture
def holder():
    held = []
    yield held
    held.clear()            # teardown releases what the test put here


@pytest.mark.closuretrace(max_alive_closures=1)
def test_leaks(closuretrace):
    for i in range(5):
        with closuretrace.cycle():
            LEAKED.append(make_closure(i))


@pytest.mark.closuretrace(max_rss_growth="2 MiB")
def test_rss_leak(closuretrace):
    for i in range(5):
        with closuretrace.cycle():
            BLOBS.append(b"x" * (4 << 20))


@pytest.mark.closuretrace(max_alive_closures=0, max_object_growth=50, max_rss_growth="1 MiB")
def test_clean(closuretrace):
    for i in range(5):
        with closuretrace.cycle():
            kept = [make_closure(i), lookup(i)]
            kept.clear()


@pytest.mark.closuretrace(max_alive_closures=0)
def test_held_by_fixture(closuretrace, holder):
    for i in range(5):
        with closuretrace.cycle():
            holder.append(make_closure(i))
    assert active() is not None


def test_unmarked(request):
    assert request.config.pluginmanager.get_plugin("closuretrace-manager") is not None
    assert active() is None
    assert "tensorflow" not in sys.modules
"""


def test_leaking_test_fails_with_the_summary_and_clean_ones_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the -rf line in full
    # With CI set, pytest prints the whole failure message in the -rf summary too; this test checks the layout
    # a user sees at a terminal, so it pins that.
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_leak=LEAK_MODULE)
    result = pytester.runpytest_subprocess("-rf", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks _*",
            "closuretrace limit broken: max_alive_closures=1 (5 alive after teardown)",
            "  max_alive_closures=1: 5 closures made by the test are alive after teardown, by factory: "
            "test_leak.make_closure (5); held by test_leak.LEAKED",
            "closuretrace test of test_leak.py::test_leaks (completed, *, 5 cycles)",
            "Closures by factory",
            "  test_leak.make_closure  closure * 5 * 0 * 5 * 0  payload: list*",
            "What keeps it alive (closures_alive): closure #* make_closure.<locals>.f, born in cycle *",
            "  1. test_leak.LEAKED → list",
            "closuretrace limit broken: max_rss_growth=2.0 MiB per cycle (+4.0 MiB per cycle)",
            "  max_rss_growth=2.0 MiB per cycle: RSS grew +4.0 MiB per cycle, 95% CI [[]+*, +*[]], over 4 cycles after "
            "1 warm-up: above the limit and the 95% CI is above 0",
            "FAILED test_leak.py::test_leaks - Failed: closuretrace limit broken: max_alive_closures=1 (5 alive after "
            "teardown)",
            "FAILED test_leak.py::test_rss_leak - Failed: closuretrace limit broken: max_rss_growth=2.0 MiB per cycle*",
        ]
    )
    assert out.count("Verdicts (growth per cycle") == 2  # formatted once per failed test
    assert "ERROR" not in out  # a failed test, not a teardown error
    result.stdout.fnmatch_lines(["*= closuretrace =*", "4 tests recorded, 2 broke their limits"])


def test_unmarked_tests_cost_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys
        from closuretrace.instrument.state import active
        from closuretrace.pytest_plugin import _STATE

        def test_plain(request):
            assert request.config.pluginmanager.get_plugin("closuretrace-manager") is not None
            assert request.node.stash.get(_STATE, None) is None  # pytest's own protocol ran it
            assert active() is None
            assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "= closuretrace =" not in result.stdout.str()  # nothing recorded, nothing to say


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs Keras")
def test_keras_compile_in_a_loop_breaks_object_growth(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_keras="""
        import numpy as np
        import pytest

        def data():
            rng = np.random.default_rng(0)
            x = rng.standard_normal((64, 16), dtype=np.float32)
            return x, (x[:, :1] > 0).astype(np.float32)

        def outer_loss(offset):
            import keras
            def loss_function(y_true, y_pred):
                return keras.losses.mean_squared_error(y_true, y_pred) + offset
            return loss_function

        def model():
            import keras
            return keras.Sequential([keras.Input((16,)), keras.layers.Dense(4), keras.layers.Dense(1)])

        @pytest.mark.closuretrace(max_object_growth=500)
        def test_compile_every_cycle():
            x, y = data()
            m = model()
            for i in range(5):                       # each fit() ends a cycle
                m.compile("sgd", loss=outer_loss(float(i)))
                m.fit(x, y, epochs=1, batch_size=32, verbose=0)

        @pytest.mark.closuretrace(max_object_growth=500, max_alive_closures=0)
        def test_compile_once():
            x, y = data()
            m = model()
            m.compile("sgd", loss=outer_loss(1.0))
            for i in range(5):
                m.fit(x, y, epochs=1, batch_size=32, verbose=0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf", timeout=120)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "closuretrace limit broken: max_object_growth=500 per cycle (+* per cycle)",
            "  max_object_growth=500 per cycle: gc objects grew +* per cycle, 95% CI [[]+*, +*[]], over 4 cycles "
            "after 1 warm-up: above the limit and the 95% CI is above 0",
            "closuretrace test of test_keras.py::test_compile_every_cycle (completed, *, 5 cycles)",
            "What keeps it alive (*): FuncGraph object*",
            "FAILED test_keras.py::test_compile_every_cycle - *",
        ]
    )


BENCH_MODULE = """
import pytest

HELD = []

def make(i):
    def f():
        return i
    return f

@pytest.mark.closuretrace(max_object_growth=10)
def test_bench_leaky(benchmark):
    benchmark(lambda: HELD.extend(make(i) for i in range(10)))

@pytest.mark.closuretrace(max_object_growth=10, max_alive_closures=0)
def test_bench_clean(benchmark):
    benchmark(lambda: sum(range(100)))
"""


def test_benchmark_rounds_are_cycles_and_the_verdict_goes_to_extra_info(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_MODULE)
    args = ("-p", "no:cacheprovider", "--benchmark-min-rounds=12", "--benchmark-max-time=0.05")
    result = pytester.runpytest_subprocess(*args, "--benchmark-json=bench.json")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["closuretrace limit broken: max_object_growth=10 per cycle (+* per cycle)"])
    benches = {b["name"]: b for b in json.loads((pytester.path / "bench.json").read_text())["benchmarks"]}
    leaky = benches["test_bench_leaky"]["extra_info"]["closuretrace"]
    clean = benches["test_bench_clean"]["extra_info"]["closuretrace"]
    assert leaky["rounds_probed"] == clean["rounds_probed"] == 10 == leaky["cycles"]
    assert leaky["per_cycle"]["gc_objects"] > 10 and leaky["limits_broken"] == ["max_object_growth"]
    assert "gc_objects" in leaky["leaks"] and leaky["closures_alive"] > 0
    assert clean["limits_broken"] == [] and clean["closures_alive"] == 0
    assert clean["per_cycle"]["gc_objects"] <= 10 and len(clean["ci95"]["gc_objects"]) == 2
    assert benches["test_bench_clean"]["stats"]["rounds"] >= 12  # the benchmark itself still ran in full

    # Disabled, the benchmark runs once: there is nothing per round to judge, and nothing fails for it.
    disabled = pytester.runpytest_subprocess(*args, "--benchmark-disable", "--closuretrace-report=r.json")
    disabled.assert_outcomes(passed=2)
    tests = {t["nodeid"]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    checks = tests["test_bench.py::test_bench_leaky"]["checks"]
    assert [(c["limit"], c["status"]) for c in checks] == [("max_object_growth", "skipped")]
    assert "benchmarks are disabled" in checks[0]["detail"]


def test_xdist_workers_results_reach_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leak=LEAK_MODULE)
    pytester.makepyfile(
        test_other="""
        import pytest

        @pytest.mark.closuretrace(max_object_growth=100)
        def test_cycles(closuretrace):
            for _ in range(4):
                with closuretrace.cycle():
                    pass

        def test_fixture_only(closuretrace):
            closuretrace.end_cycle()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", "--closuretrace-report", "out/run.json"
    )
    result.assert_outcomes(failed=2, passed=5)
    result.stdout.fnmatch_lines(["closuretrace report written to *run.json", "FAILED test_leak.py::test_leaks*"])
    data = json.loads((pytester.path / "out" / "run.json").read_text())
    assert data["kind"] == "pytest" and data["schema_version"] == 1
    tests = {t["nodeid"]: t for t in data["tests"]}
    assert set(tests) == {
        "test_leak.py::test_leaks",
        "test_leak.py::test_rss_leak",
        "test_leak.py::test_clean",
        "test_leak.py::test_held_by_fixture",
        "test_other.py::test_cycles",
        "test_other.py::test_fixture_only",
    }
    assert {t["worker"] for t in tests.values()} == {"gw0", "gw1"}
    assert {t["nodeid"] for t in data["tests"][:2]} == {"test_leak.py::test_leaks", "test_leak.py::test_rss_leak"}
    leak = tests["test_leak.py::test_leaks"]
    assert leak["outcome"] == "broke limits" and leak["closures_alive"] == 5
    assert leak["retention_root"] == "test_leak.LEAKED"
    assert tests["test_leak.py::test_held_by_fixture"]["closures_alive"] == 0


@pytest.mark.parametrize(
    ("ini", "cli", "expected"),
    [
        ("closuretrace_report = a.json", ["--closuretrace-report", "b.json"], "b.json"),
        ("closuretrace_report = a.json", [], "a.json"),
        ("", [], None),
        ("closuretrace_report = a.json", ["--closuretrace-report="], None),
    ],
    ids=["cli-wins", "ini-only", "neither", "cli-empty-disables"],
)
def test_report_path_precedence(pytester: pytest.Pytester, ini: str, cli: list[str], expected: str | None) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        """
        def test_one(closuretrace):
            closuretrace.end_cycle()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *cli)
    result.assert_outcomes(passed=1)
    written = sorted(p.name for p in pytester.path.glob("*.json"))
    assert written == ([expected] if expected else [])
    if expected:
        result.stdout.fnmatch_lines([f"closuretrace report written to *{expected}"])
        tests = json.loads((pytester.path / expected).read_text())["tests"]
        assert [t["nodeid"] for t in tests] == ["test_report_path_precedence.py::test_one"]


@pytest.mark.parametrize(
    ("ini", "cli", "recorded"),
    [("closuretrace = true", [], True), ("closuretrace = true", ["--no-closuretrace"], False), ("", [], False),
     ("closuretrace = false", ["--closuretrace"], True)],
    ids=["ini", "cli-off-wins", "default", "cli-on-wins"],
)
def test_record_all_precedence(pytester: pytest.Pytester, ini: str, cli: list[str], recorded: bool) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        f"""
        from closuretrace.instrument.state import active

        def test_unmarked():
            assert (active() is not None) is {recorded!r}
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider", *cli).assert_outcomes(passed=1)


def test_one_precedence_rule() -> None:
    assert resolve_setting("b.json", "a.json", None) == "b.json"  # command line > ini
    assert resolve_setting(None, "a.json", None) == "a.json"  # ini > default
    assert resolve_setting(None, "", None) is None  # an empty ini string is "not set"
    assert resolve_setting(None, None, False) is False
    assert resolve_setting(False, True, False) is False  # --no-closuretrace beats closuretrace = true
    assert resolve_setting("", "a.json", None) == ""  # --closuretrace-report= (empty) beats the ini: no report


def test_bad_marker_use_is_one_line_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.closuretrace(max_rss=1)
        def test_unknown(): pass

        @pytest.mark.closuretrace(max_rss_growth="2 MBB")
        def test_size(): pass

        @pytest.mark.closuretrace(max_alive_closures=-1)
        def test_negative(): pass

        @pytest.mark.closuretrace(max_object_growth=-5.0)
        def test_negative_growth(): pass

        @pytest.mark.closuretrace(3)
        def test_positional(): pass

        def test_unaffected(): pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=5, passed=1)
    result.stdout.fnmatch_lines(
        [
            "closuretrace marker: unknown argument max_rss=1 (known: max_alive_closures, *) "
            "(test test_bad.py::test_unknown)",
            "closuretrace marker: max_rss_growth: '2 MBB': unknown size unit 'MBB' * (test test_bad.py::test_size)",
            "closuretrace marker: max_alive_closures=-1: must be a whole number >= 0 (a limit cannot be negative) "
            "(test test_bad.py::test_negative)",
            "closuretrace marker: max_object_growth=-5.0: must be a number >= 0 * "
            "(test test_bad.py::test_negative_growth)",
            "closuretrace marker: positional argument 3: use keywords * (test test_bad.py::test_positional)",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "checks.py" not in out and "pytest_plugin.py" not in out


def test_bad_report_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("--closuretrace-report", "report.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*closuretrace: --closuretrace-report: *report.txt: extension '.txt'; use .json, .md or .html"]
    )


def test_fixture_api_and_the_recorded_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import json

        def pytest_closuretrace_recorded(item, session, checks):
            with open("recorded.json", "a") as fh:
                fh.write(json.dumps({"nodeid": item.nodeid, "cycles": len(session.cycles),
                                     "checks": [c.status for c in checks]}) + "\\n")
        """
    )
    pytester.makepyfile(
        test_api="""
        import pytest

        @pytest.fixture
        def too_early(closuretrace):
            with pytest.raises(RuntimeError, match="before the test function starts"):
                closuretrace.cycle()
            return closuretrace

        HANDLES = []

        @pytest.mark.closuretrace(max_object_growth=1000, warmup=0)
        def test_api(too_early, closuretrace):
            assert too_early is closuretrace and closuretrace.session is None
            for _ in range(3):
                with closuretrace.cycle("step"):
                    pass
            closuretrace.profiler.end_cycle("by hand")
            assert closuretrace.cycles == 4
            HANDLES.append(closuretrace)

        def test_after():
            (handle,) = HANDLES
            assert [c.label for c in handle.session.cycles] == ["step", "step", "step", "by hand"]
            assert [c.status for c in handle.checks] == ["ok"]
            with pytest.raises(RuntimeError, match="after the test"):
                handle.profiler
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    (line,) = (pytester.path / "recorded.json").read_text().splitlines()
    assert json.loads(line) == {"nodeid": "test_api.py::test_api", "cycles": 4, "checks": ["ok"]}


# -- units: no pytest session --------------------------------------------------------------------------------


def test_parse_limits_merges_markers_closest_first() -> None:
    limits = parse_limits([((), {"max_rss_growth": "2 MiB"}), ((), {"max_rss_growth": 1, "max_alive_closures": 0})])
    assert limits == Limits(max_alive_closures=0, max_rss_growth=2 * 1024**2)
    assert limits.thresholds() == {"rss_bytes": 2 * 1024**2}
    assert parse_limits([((), {"max_object_growth": 0, "warmup": 2})]).to_dict() == {
        "max_object_growth": 0.0,
        "warmup": 2,
    }
    assert not parse_limits([]).has_limits
    for bad in ({"max_alive_closures": 1.5}, {"warmup": True}, {"max_rss_growth": math.inf}, {"max_rss_growth": []}):
        with pytest.raises(MarkerError, match=next(iter(bad))):
            parse_limits([((), bad)])


def test_run_report_renders_ranked_and_escaped() -> None:
    def rec(nodeid: str, gc: float, broken: bool) -> RecordedTest:
        verdict = {"metric": "gc_objects", "label": "gc objects", "unit": "objects", "slope_per_cycle": gc,
                   "ci_low": gc, "ci_high": gc, "n_cycles": 4, "leak": gc > 100}
        checks = [{"limit": "max_object_growth", "status": "breached" if broken else "ok", "detail": "<b>x</b>"}]
        return RecordedTest(nodeid=nodeid, outcome="passed", duration_s=0.1, cycles=5, warmup=1,
                            verdicts=[verdict], checks=checks)

    report = RunReport(tests=[rec("t.py::ok", 5, False), rec("t.py::<script>", 900, True)])
    assert [t.nodeid for t in report.ranked()] == ["t.py::<script>", "t.py::ok"]
    page = render(report, "html")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    md = render(report, "markdown")
    assert md.index("`t.py::<script>`") < md.index("`t.py::ok`") and "+900 \\[+900, +900\\]" in md
    data = json.loads(render(report, "json"))
    assert RunReport.from_dict(data).tests[0].nodeid == "t.py::<script>"


def test_report_header_mentions_recording(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("--closuretrace", f"--closuretrace-report={tmp_path / 'r.md'}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["closuretrace: recording every test", "closuretrace report: *r.md"])
    assert "| 1 | `test_report_header_mentions_recording.py::test_x` | passed |" in (tmp_path / "r.md").read_text()

