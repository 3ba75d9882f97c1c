"""``closuretrace compare``: the scenario matrix, the conclusion logic, the report, the CLI and one real run.

The conclusion is tested on hand-built scenarios (no TensorFlow): a factor that moves memory and one that does
not must both be recognised, from the numbers alone. One reduced matrix runs for real (TensorFlow on CPU,
subprocesses), once per module, and the assertions are on relations between scenarios, not on exact bytes.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from closuretrace.analysis.verdicts import verdicts
from closuretrace.cli.main import main
from closuretrace.experiment import conclusion as cmp
from closuretrace.experiment import factors, pool
from closuretrace.experiment.run import CompareOptions, assemble, build_jobs, scenario_result
from closuretrace.experiment.scenarios import CAPTURES, Scenario, design, matrix, parse_list
from closuretrace.renderers import render
from closuretrace.session import CompareSession, CycleSample, RunInfo, ScenarioResult, Session, load_session
from support import assert_loaded_as_sent, require_module

MiB = 1024 * 1024


# -- hand-built scenarios -----------------------------------------------------------------------------------------

def scenario(
    strategy: str,
    capture: str,
    compile: str,
    rss: float,
    graphs: float = 7,
    gc_per_cycle: float = 5000,
    cycles: int = 8,
    noise: float = 0.15 * MiB,
    jump: tuple[int, float] | None = None,
    seed: int = 0,
    offset: float | None = 10.0,
    created: int | None = None,
) -> ScenarioResult:
    """A finished scenario whose RSS grows ``rss`` bytes per cycle with noise (and optionally one ``jump`` of
    RSS at a cycle); the verdicts are computed from the cycles by the profiler's own code."""
    rng = random.Random(seed)
    level = 600 * MiB
    samples = []
    for i in range(cycles):
        if i:
            level += rss + rng.uniform(-noise, noise)
        if jump is not None and i == jump[0]:
            level += jump[1]
        samples.append(
            CycleSample(
                index=i,
                label=f"fit #{i + 1}",
                seconds=1.0,
                probe_seconds=0.3,
                metrics={
                    "rss_bytes": level,
                    "gc_objects": 300_000 + gc_per_cycle * i,
                    "closures_alive": 1,
                    "tf_func_graphs": 20 + graphs * i,
                },
                closures_alive_by_factory={"outer_loss": 1},
            )
        )
    n_closures = created if created is not None else (cycles if strategy == "recreate" and compile != "once" else 1)
    return ScenarioResult(
        strategy=strategy,
        capture=capture,
        compile=compile,
        pid=1000 + seed,
        cycles=samples,
        verdicts=verdicts(samples, 1),
        closures_created=n_closures,
        closures_alive_end=1,
        steps=[{"cycle": i, "compile_s": 0.002, "fit_s": 0.4, "traces": 3 if compile != "once" or i == 0 else 0}
               for i in range(cycles)],
        final_loss=10.5,
        final_accuracy=0.95,
        offset=offset,
        capture_nbytes=8 if capture == "scalar" else 4_000_000,
        data="synthetic MNIST-shaped (seed 0)",
        samples=2048,
    )


def seed_like(recreate_extra: float = 0.0, numpy_extra: float = 41 * MiB, optimizer_extra: float = 2.5 * MiB,
              compile_growth: float = 6.7 * MiB) -> list[ScenarioResult]:
    """The default matrix with the effects given: each factor's effect is what it adds to RSS per cycle."""
    out = []
    seed = 0
    for capture in CAPTURES:
        extra = numpy_extra if capture == "numpy" else 0.0
        for strategy in ("recreate", "reuse"):
            seed += 1
            add = recreate_extra if strategy == "recreate" else 0.0
            out.append(scenario(strategy, capture, "same-optimizer", compile_growth + extra + add, seed=seed))
    for strategy in ("recreate", "reuse"):
        seed += 1
        add = recreate_extra if strategy == "recreate" else 0.0
        out.append(scenario(strategy, "scalar", "new-optimizer", compile_growth + optimizer_extra + add,
                            graphs=23, seed=seed))
    out.append(scenario("reuse", "scalar", "once", 0.1 * MiB, graphs=0, gc_per_cycle=0, seed=99))
    return out


def conclusion_of(scenarios: list[ScenarioResult]) -> list[str]:
    return cmp.sentences_for(scenarios, capture_value=10.0)[1]


def sentence(sentences: list[str], start: str) -> str:
    hits = [s for s in sentences if s.startswith(start)]
    assert hits, f"no sentence starts with {start!r}: {sentences}"
    return hits[0]


# -- the matrix ---------------------------------------------------------------------------------------------------

def test_default_matrix_keeps_every_axis_not_every_combination() -> None:
    default, full = matrix(), matrix(full=True)
    assert len(default) == 11 and len(full) == 20
    assert {s for s, _, _ in default} == {"recreate", "reuse"}
    assert {c for _, c, _ in default} == set(CAPTURES)
    assert {m for _, _, m in default} == {"new-optimizer", "same-optimizer", "once"}
    # compile once has a single closure: it runs once per capture kind at most, recorded as reuse
    assert [t for t in default if t[2] == "once"] == [("reuse", "scalar", "once")]
    assert sorted(t for t in full if t[2] == "once") == sorted(("reuse", c, "once") for c in CAPTURES)
    assert len(set(default)) == len(default)
    assert "--full" in design(["recreate"], ["scalar"], ["once"], False)


def test_matrix_follows_the_options() -> None:
    assert matrix(["reuse"], ["numpy"], ["new-optimizer"]) == [("reuse", "numpy", "new-optimizer")]
    # without the seed's compile mode the capture axis goes under the first one given
    assert ("recreate", "tensor", "new-optimizer") in matrix(captures=["scalar", "tensor"], compiles=["new-optimizer"])
    assert matrix(captures=["tensor"], compiles=["once"]) == [("reuse", "tensor", "once")]


def test_parse_list() -> None:
    assert parse_list("numpy, scalar", CAPTURES, "--captures") == ["scalar", "numpy"]
    assert parse_list("all", CAPTURES, "--captures") == list(CAPTURES)
    with pytest.raises(ValueError, match="unknown 'foo'"):
        parse_list("scalar,foo", CAPTURES, "--captures")
    with pytest.raises(ValueError, match="empty"):
        parse_list(" , ", CAPTURES, "--captures")


def test_jobs_run_every_scenario_with_its_settings() -> None:
    opts = CompareOptions(scenarios=[Scenario(s, c, m, cycles=5) for s, c, m in matrix()], jobs=2)
    jobs = build_jobs(opts)
    assert len(jobs) == 13 and len({j.key for j in jobs}) == 13
    spec = json.loads(jobs[0].args[jobs[0].args.index("--spec") + 1])
    assert spec["cycles"] == 5 and spec["threads"] >= 1
    assert {j.module for j in jobs} == {
        "closuretrace.experiment.worker", "closuretrace.experiment.savecheck", "closuretrace.experiment.environment"
    }


# -- the conclusion, from numbers alone --------------------------------------------------------------------------

def test_recreate_equal_to_reuse_says_recreating_does_not_move_memory() -> None:
    s = conclusion_of(seed_like(recreate_extra=0.0))
    text = sentence(s, "Recreating the closure")
    assert text.startswith("Recreating the closure does not move memory")
    assert "freed" in text
    assert not any("Recreating the closure moves memory" in x for x in s)


def test_recreate_steeper_than_reuse_says_recreating_moves_memory() -> None:
    s = conclusion_of(seed_like(recreate_extra=3 * MiB))
    assert sentence(s, "Recreating the closure").startswith("Recreating the closure moves memory")
    assert "make the loss closure once" in sentence(s, "What to do")


def test_one_jump_of_rss_does_not_make_a_factor_move() -> None:
    """An allocator step in one cycle of one run tilts its least-squares slope, not its median step."""
    scenarios = seed_like()
    tensor = next(i for i, x in enumerate(scenarios) if x.name == "recreate/tensor/same-optimizer")
    scenarios[tensor] = scenario("recreate", "tensor", "same-optimizer", 6.7 * MiB, jump=(4, 6 * MiB), seed=3)
    s = conclusion_of(scenarios)
    assert sentence(s, "Recreating the closure").startswith("Recreating the closure does not move memory")
    assert "tensor capture" not in sentence(s, "What the closure captures")


def test_compile_once_against_every_cycle() -> None:
    s = conclusion_of(seed_like())
    text = sentence(s, "Compiling every cycle")
    assert text.startswith("Compiling every cycle moves memory")
    assert "compile once" in sentence(s, "What to do")
    # and the other way round: when compile once grows like compiling every cycle, it does not move memory
    flat = seed_like(compile_growth=0.1 * MiB, numpy_extra=0, optimizer_extra=0)
    flat = [x if x.compile != "once" else scenario("reuse", "scalar", "once", 0.1 * MiB, graphs=7, seed=99)
            for x in flat]
    text = sentence(conclusion_of(flat), "Compiling every cycle")
    assert text.startswith("Compiling every cycle does not move memory")


def test_capture_kinds_and_optimizer() -> None:
    s = conclusion_of(seed_like())
    text = sentence(s, "What the closure captures")
    assert text.startswith("What the closure captures moves memory")
    assert "numpy" in text and "about 10" in text  # 41 MiB per cycle for 4 MB: about 10.7x its size
    assert "do not differ" in text and "tensor" in text.lower() and "variable" in text
    assert sentence(s, "A new optimizer per compile").startswith("A new optimizer per compile (optimizer='adam') adds")
    none = conclusion_of(seed_like(numpy_extra=0, optimizer_extra=0))
    assert "does not move memory" in sentence(none, "What the closure captures")
    assert "makes no measurable difference" in sentence(none, "A new optimizer per compile")
    assert "Moves memory: compiling every cycle." in factors.summary(factors.comparisons(seed_like(numpy_extra=0,
                                                                                          optimizer_extra=0)))


def test_offsets_failures_and_too_few_cycles() -> None:
    scenarios = seed_like()
    assert "really reaches the loss" in sentence(conclusion_of(scenarios), "The captured value")
    scenarios[0] = ScenarioResult("recreate", "scalar", "same-optimizer", error="Traceback ...\nMemoryError")
    scenarios[1].offset = 0.0
    s = conclusion_of(scenarios)
    assert "1 scenario(s) failed" in sentence(s, "1 scenario")
    assert "differs from the captured value" in sentence(s, "The loss minus")
    short = [scenario("recreate", "scalar", "same-optimizer", MiB, cycles=3),
             scenario("reuse", "scalar", "same-optimizer", MiB, cycles=3, seed=2)]
    assert any(x.startswith("Too few cycles") for x in conclusion_of(short))


def test_save_and_environment_sentences() -> None:
    save = {
        "value": 7.25,
        "closure": {"saved": True, "loaded": False, "value_preserved": None,
                    "error": "TypeError: Could not locate function 'loss_function'. Make sure custom classes ...",
                    "custom_objects": {"loaded": True, "value_preserved": False, "loaded_value": 0.0}},
        "loss_subclass": {"saved": True, "loaded": True, "value_preserved": True, "loaded_value": 7.25},
    }
    env = {"versions": {"tensorflow": "2.21.0", "keras": "3.15.1"},
           "graph_check": {"graphs_traced": 27, "graphs_alive_after_delete": 22, "graphs_outlive_model": True,
                           "registry_holds_graphs": True}}
    s = cmp.sentences_for(seed_like(), env, save, 10.0)[1]
    text = sentence(s, "Saving")
    assert "Could not locate function 'loss_function'." in text and "Make sure" not in text
    assert "not the saved 7.25" in text
    assert "saves and loads with its value (7.25)" in sentence(s, "A keras.losses.Loss subclass")
    assert "TensorFlow 2.21.0" in sentence(s, "Measured with") and "outlive" in sentence(s, "Measured with")
    env["graph_check"] = {"graphs_traced": 27, "graphs_alive_after_delete": 0, "graphs_outlive_model": False}
    assert "freed with their model" in sentence(cmp.sentences_for([], env, {}, None)[1], "Measured with")


# -- the report -----------------------------------------------------------------------------------------------------

def hand_session() -> CompareSession:
    scenarios = seed_like()
    scenarios.append(ScenarioResult("recreate", "variable", "new-optimizer", pid=77,
                                    error="the process was killed by SIGKILL without a result; its stderr ends with:\n"
                                          "<script>alert(1)</script> | ` **"))
    env = {"versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}, "graph_check_text": "checked"}
    save = {"value": 7.25, "closure": {"saved": True, "loaded": False, "error": "TypeError: no | way"},
            "loss_subclass": {"saved": True, "loaded": True, "value_preserved": True, "loaded_value": 7.25}}
    session = CompareSession(
        run=RunInfo(argv=["closuretrace", "compare"], command="compare", duration_s=80.0),
        settings={"design": "default", "cycles": 8, "warmup": 1, "data": "synthetic MNIST-shaped (seed 0)",
                  "capture_value": 10.0},
        environment=env,
        scenarios=scenarios,
        save_check=save,
    )
    return cmp.conclude(session)


def test_json_round_trip_and_load_session_dispatch(tmp_path: Path) -> None:
    session = hand_session()
    session.scenarios[0].final_loss = math.nan  # a loss that diverged: optional, so written and read as null
    session.scenarios[1].wall_seconds = math.inf
    session.comparisons[0].step_difference = math.nan  # a float field: null reads back as NaN
    session.environment["graph_check"] = {"seconds": math.inf}  # free-form: null stays null
    data = session.to_dict()
    assert data["kind"] == "compare" and data["schema_version"] == 1
    first = data["scenarios"][0]
    for key in ("strategy", "capture", "compile", "cycles", "verdicts", "closures_created", "closures_alive_end",
                "final_loss", "offset", "seconds_per_cycle"):
        assert key in first
    assert set(data["save_check"]) >= {"closure", "loss_subclass"}
    path = tmp_path / "compare.json"
    path.write_text(render(session, "json"), encoding="utf-8")
    back = load_session(path)
    assert isinstance(back, CompareSession)
    # field by field against what went in (to_dict() against to_dict() would hide NaN and infinities)
    assert_loaded_as_sent(back, session)
    assert back.scenarios[0].final_loss is None and back.scenarios[1].wall_seconds is None
    assert math.isnan(back.comparisons[0].step_difference)
    assert back.environment["graph_check"] == {"seconds": None}
    assert back.scenarios[0].seconds_per_cycle == pytest.approx(0.402)


def test_load_session_still_reads_profile_sessions(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(Session(run=RunInfo(argv=["x.py"])).to_json(), encoding="utf-8")
    assert isinstance(load_session(p), Session)


def test_markdown_text_and_html(tmp_path: Path) -> None:
    session = hand_session()
    md = render(session, "markdown")
    assert md.startswith("# closuretrace compare: 12 scenarios, 1 failed")
    assert "## Conclusion" in md and "Compiling every cycle moves memory" in md
    assert "| 1 | `recreate/numpy/same-optimizer` |" in md  # ranked: steepest first
    assert "``<script>alert(1)</script>" in md  # in a code span: shown, never run
    text = render(session, "text")
    assert "Conclusion" in text and "FAILED" in text
    page = render(session, "html")
    assert page.count("<svg") >= 2  # the slope bars and the per-cycle lines
    assert "<script>alert(1)</script>" not in page
    assert 'id="compare"' in page


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["scenarios"][0].update(steps=[{"cycle": "x", "compile_s": "slow", "fit_s": 10**400}]),
        lambda d: d["scenarios"][0].update(timings={"total": "?"}, offset=None, final_loss=None, pid=None),
        lambda d: d["scenarios"][1].update(verdicts=[], cycles=[]),
        lambda d: d.update(save_check={"closure": "broken", "loss_subclass": {"custom_objects": {"passed": 3}}}),
        lambda d: d.update(environment={"versions": {"tensorflow": None}}, settings={"cycles": [1]}),
        lambda d: d["comparisons"][0].update(a_slope=None, difference=None, half_width=None),
        lambda d: d.update(scenarios=[], comparisons=[], conclusion=[]),
    ],
)
def test_odd_reports_load_and_render_or_are_refused(tmp_path: Path, mutate: Any) -> None:
    from closuretrace.session import SessionError

    data = hand_session().to_dict()
    mutate(data)
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        session = load_session(path)
    except SessionError:
        return
    for fmt in ("json", "markdown", "html", "text"):
        assert render(session, fmt)


def test_render_command_reads_a_compare_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "c.json"
    src.write_text(hand_session().to_json(), encoding="utf-8")
    assert main(["render", str(src), "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["diff", str(src), str(src)]) == 2
    assert "closuretrace compare' report" in capsys.readouterr().err


# -- the pool and crashed scenarios ----------------------------------------------------------------------------------

def test_a_crashing_process_becomes_an_error_and_the_others_still_run() -> None:
    bad = pool.Job("scenario:bad", "bad", "closuretrace.experiment.worker", ["--spec", "{not json"], weight=2)
    ok = pool.Job("ok", "ok", "closuretrace.experiment.scenarios", [], weight=1)  # runs, writes nothing
    results = pool.run_jobs([bad, ok], 2, pool._Silent())
    assert [r.key for r in results] == ["scenario:bad", "ok"]
    assert results[0].returncode != 0 and results[0].data is None
    assert "JSONDecodeError" in (results[0].error or "")
    assert results[1].returncode == 0 and "without a result" in (results[1].error or "")
    spec = Scenario("recreate", "scalar", "same-optimizer")
    rec = scenario_result(spec, results[0])
    assert not rec.ok and "JSONDecodeError" in (rec.error or "")
    session = assemble(CompareOptions(scenarios=[spec], checks=False), {"scenario:bad": results[0]})
    assert session.scenarios[0].error and session.run.exit_code == 1
    assert any("failed" in c for c in session.conclusion)


# -- the command line (no TensorFlow needed) -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--captures", "foo"], "unknown 'foo'"),
        (["--cycles", "0"], "--cycles must be 1 or more"),
        (["--jobs", "0"], "--jobs must be 1 or more"),
        (["--capture-mb", "-1"], "--capture-mb must be"),
        (["--strategies", ","], "empty list"),
        (["--data", "/nonexistent/mnist.npz"], "no such file"),
        (["-o", "report.txt"], "use .json, .md or .html"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("closuretrace: error: ")
    assert message in err[0]


def test_data_that_is_not_mnist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.npz"
    bad.write_text("not a zip", encoding="utf-8")
    assert main(["compare", "--data", str(bad)]) == 2
    assert "not an .npz file" in capsys.readouterr().err


def test_help_documents_the_design(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--full", "--cycles", "--capture-mb", "--strategies", "--captures", "--jobs", "--data",
                 "same-optimizer", "every axis"):
        assert word in out


# -- one real run --------------------------------------------------------------------------------------------------

CYCLES = 4
SCALAR = 10.0


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One reduced matrix, run for real. Under pytest-xdist the workers share it: the first to take the lock
    runs it, the others read its report (the base temp directory's parent is common to all workers)."""
    require_module("keras")
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base temp directory is one level below the session's; without it, the parent
    # is shared by every pytest session, so the run must stay in this session's own directory.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "closuretrace-compare"
    shared.mkdir(exist_ok=True)
    out, log = shared / "compare.json", shared / "stderr.txt"
    with open(shared / "lock", "w") as lock:
        _lock(lock)
        if not out.exists():
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GITHUB_STEP_SUMMARY=str(shared / "summary.md"))
            proc = subprocess.run(
                [sys.executable, "-m", "closuretrace", "compare", "--cycles", str(CYCLES), "--samples", "256",
                 "--captures", "scalar,numpy", "--capture-mb", "2", "--compiles", "same-optimizer,once",
                 "--jobs", "2", "-o", str(out)],
                capture_output=True, text=True, env=env, timeout=300,
            )
            log.write_text(proc.stderr, encoding="utf-8")
            assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    summary = shared / "summary.md"
    return {"data": data, "path": out, "stderr": log.read_text(encoding="utf-8"),
            "step_summary": summary.read_text(encoding="utf-8") if summary.exists() else None}


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # no advisory locks here: each worker runs its own
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['strategy']}/{s['capture']}/{s['compile']}": s for s in data["scenarios"]}


def verdict(s: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(v for v in s["verdicts"] if v["metric"] == metric)


@pytest.mark.tf
@pytest.mark.slow
def test_the_markdown_report_lands_in_the_github_step_summary(real_run: dict[str, Any]) -> None:
    from closuretrace.renderers import render
    from closuretrace.session import load_session

    summary = real_run["step_summary"]
    assert summary is not None, "GITHUB_STEP_SUMMARY was set and nothing was appended"
    assert summary.rstrip("\n") == render(load_session(real_run["path"]), "markdown").rstrip("\n")


@pytest.mark.tf
@pytest.mark.slow
def test_each_scenario_ran_in_its_own_process(real_run: dict[str, Any]) -> None:
    data = real_run["data"]
    assert data["kind"] == "compare" and data["schema_version"] == 1
    names = set(by_name(data))
    assert names == {"recreate/scalar/same-optimizer", "reuse/scalar/same-optimizer",
                     "recreate/numpy/same-optimizer", "reuse/numpy/same-optimizer", "reuse/scalar/once"}
    pids = [s["pid"] for s in data["scenarios"]]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    assert all(s["error"] is None and len(s["cycles"]) == CYCLES for s in data["scenarios"])
    assert "closuretrace: [" in real_run["stderr"]  # progress, plain lines without a terminal


@pytest.mark.tf
@pytest.mark.slow
def test_closures_created_and_alive(real_run: dict[str, Any]) -> None:
    s = by_name(real_run["data"])
    for capture in ("scalar", "numpy"):
        assert s[f"recreate/{capture}/same-optimizer"]["closures_created"] == CYCLES
        assert s[f"reuse/{capture}/same-optimizer"]["closures_created"] == 1
        # recreated closures are freed: only the one the model holds is alive at the end
        assert s[f"recreate/{capture}/same-optimizer"]["closures_alive_end"] == 1
    assert s["reuse/scalar/once"]["closures_created"] == 1


@pytest.mark.tf
@pytest.mark.slow
def test_compile_once_is_flat_where_compiling_every_cycle_leaks_graphs(real_run: dict[str, Any]) -> None:
    s = by_name(real_run["data"])
    once = verdict(s["reuse/scalar/once"], "tf_func_graphs")
    assert not once["leak"] and once["slope_per_cycle"] == 0
    for name in ("recreate/scalar/same-optimizer", "reuse/scalar/same-optimizer"):
        every = verdict(s[name], "tf_func_graphs")
        assert every["leak"] and every["slope_per_cycle"] > 0
        assert s[name]["traces_per_cycle"] > 0
    assert s["reuse/scalar/once"]["traces_per_cycle"] == 0


@pytest.mark.tf
@pytest.mark.slow
def test_offset_is_the_captured_value(real_run: dict[str, Any]) -> None:
    for s in real_run["data"]["scenarios"]:
        assert s["offset"] == pytest.approx(SCALAR, abs=0.05), s["strategy"] + s["capture"]
        assert math.isfinite(s["final_loss"]) and s["seconds_per_cycle"] > 0


@pytest.mark.tf
@pytest.mark.slow
def test_save_check(real_run: dict[str, Any]) -> None:
    save = real_run["data"]["save_check"]
    assert save["closure"]["saved"] is True and save["closure"]["loaded"] is False
    assert "Could not locate function" in save["closure"]["error"]
    assert save["closure"]["custom_objects"]["loaded"] is True
    assert save["closure"]["custom_objects"]["value_preserved"] is False  # the value is not in the file
    assert save["loss_subclass"]["loaded"] is True and save["loss_subclass"]["value_preserved"] is True


@pytest.mark.tf
@pytest.mark.slow
def test_conclusion_environment_and_renderers(real_run: dict[str, Any], tmp_path: Path) -> None:
    data = real_run["data"]
    assert data["conclusion"] and any("compile" in c.lower() for c in data["conclusion"])
    env = data["environment"]
    assert env["versions"]["tensorflow"] and env["versions"]["keras"]
    assert isinstance(env["graph_check"]["graphs_outlive_model"], bool)
    session = load_session(real_run["path"])
    assert isinstance(session, CompareSession)
    md, page = render(session, "markdown"), render(session, "html")
    assert "## Conclusion" in md and "reuse/scalar/once" in md
    assert "<svg" in page and "Saving the model" in page


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------

def _default_sigint() -> None:
    """In the child: SIGINT as a fresh shell would give it (a test runner may ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("to", ["compare", "group"])
def test_ctrl_c_writes_the_report_of_what_finished_and_exits_130(tmp_path: Path, to: str) -> None:
    """SIGINT to ``closuretrace compare`` (``compare``: to its process alone; ``group``: to its process group,
    workers included, as Ctrl-C in a terminal sends it) once its first scenario has finished and while the second
    runs: the report is still written, with the finished scenario whole and the rest marked interrupted, the
    running worker is stopped, and the exit status is 130."""
    require_module("keras")
    out = tmp_path / "compare.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "closuretrace", "compare", "--cycles", "3", "--samples", "64", "--strategies", "reuse",
         "--captures", "scalar", "--compiles", "once,same-optimizer", "--jobs", "1", "-o", str(out)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint, start_new_session=True,
    )
    # a hang fails the test instead of blocking the suite (the whole group: no worker is left behind)
    watchdog = threading.Timer(300, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # plain progress lines: stderr is not a terminal
            seen.append(line)
            if line.startswith("closuretrace: [1/4] "):
                break
        first = seen[-1] if seen else ""
        assert first.startswith("closuretrace: [1/4] ") and ": done in " in first, "".join(seen)[-3000:]
        finished = first.removeprefix("closuretrace: [1/4] ").split(": done in ")[0]
        time.sleep(2)  # into the second scenario's run (its TensorFlow import alone takes longer)
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, rest[-3000:]
    assert "closuretrace: interrupted; the report holds the scenarios that finished" in rest
    assert f"closuretrace: report written to {out}" in rest

    session = load_session(out)
    assert isinstance(session, CompareSession)
    assert (session.run.outcome, session.run.exit_code, session.run.error) == ("interrupted", 130, "KeyboardInterrupt")
    by = {s.name: s for s in session.scenarios}
    assert set(by) == {"reuse/scalar/once", "reuse/scalar/same-optimizer"} and finished in by
    done = by.pop(finished)
    assert done.error is None and len(done.cycles) == 3 and done.verdicts
    (stopped,) = by.values()
    assert stopped.error == "interrupted before it finished" and stopped.cycles == []
    if stopped.pid is not None:
        assert not _alive(stopped.pid), "the interrupted worker was left running"
    assert session.save_check.get("error") == "interrupted before it finished"
    assert session.environment.get("error") == "interrupted before it finished"
