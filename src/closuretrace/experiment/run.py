"""The whole experiment: scenarios, save check and environment check as jobs, then a :class:`CompareSession`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from closuretrace._version import __version__
from closuretrace.experiment.pool import Interrupted, Job, JobResult, reporter_for, run_jobs
from closuretrace.experiment.scenarios import (
    CAPTURE_TEXT,
    COMPILE_TEXT,
    STRATEGY_TEXT,
    Scenario,
)
from closuretrace.outcome import EXIT_INTERRUPTED
from closuretrace.session import CompareSession, RunInfo, ScenarioResult, SessionError

WORKER = "closuretrace.experiment.worker"
SAVECHECK = "closuretrace.experiment.savecheck"
ENVIRONMENT = "closuretrace.experiment.environment"

MODEL_TEXT = "the seed's MLP: 784 -> 64 (relu) -> 10 (softmax), categorical cross-entropy + the captured value"


@dataclass
class CompareOptions:
    scenarios: list[Scenario]
    jobs: int = 1
    design: str = ""
    full: bool = False
    data_source: str = ""
    capture_mb: float = 4.0
    argv: list[str] = field(default_factory=lambda: ["closuretrace", "compare"])
    #: the save check and the graph-lifetime check (tests of the matrix alone may leave them out)
    checks: bool = True


class CompareInterrupted(KeyboardInterrupt):
    """Ctrl-C: ``session`` holds what finished (the rest recorded as interrupted)."""

    def __init__(self, session: CompareSession) -> None:
        super().__init__()
        self.session = session


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs: int, n_jobs: int) -> int:
    """TensorFlow threads per process so that the processes running side by side share the cores."""
    return max(1, usable_cores() // max(1, min(jobs, n_jobs)))


def _weight(s: Scenario) -> float:
    """Expected cost: cycles, heavier for captures that grow the graphs (numpy is embedded in every trace)."""
    per_cycle = {"numpy": 1.6, "tensor": 1.1, "variable": 1.1}.get(s.capture, 1.0)
    return 4.0 + s.cycles * s.epochs * per_cycle * max(0.25, s.samples / 2048)


def build_jobs(options: CompareOptions) -> list[Job]:
    n_jobs = len(options.scenarios) + (2 if options.checks else 0)
    threads = threads_per_job(options.jobs, n_jobs)
    jobs = []
    for s in options.scenarios:
        spec = Scenario(**{**s.to_dict(), "threads": threads})
        jobs.append(
            Job(
                key=f"scenario:{s.name}",
                label=s.name,
                module=WORKER,
                args=["--spec", json.dumps(spec.to_dict())],
                total=s.cycles,
                weight=_weight(s),
                env=s.env(),
            )
        )
    if options.checks:
        jobs.append(Job(key="savecheck", label="save check", module=SAVECHECK, total=1, weight=3.0))
        jobs.append(Job(key="environment", label="graph-lifetime check", module=ENVIRONMENT, total=1, weight=2.0))
    return jobs


def scenario_result(spec: Scenario, result: JobResult | None) -> ScenarioResult:
    """The worker's JSON as a :class:`ScenarioResult`; a crash becomes one with ``error`` set."""
    if result is None:
        return ScenarioResult(spec.strategy, spec.capture, spec.compile, warmup=spec.warmup, error="not run")
    data = result.data
    if data is None or result.interrupted:
        return ScenarioResult(
            spec.strategy, spec.capture, spec.compile, pid=result.pid, warmup=spec.warmup, error=result.error
        )
    merged: dict[str, Any] = {k: v for k, v in data.items() if k != "session"}
    inner = data.get("session")
    if isinstance(inner, dict):
        merged.update({k: inner.get(k, []) for k in ("cycles", "verdicts", "growing_types", "retention_roots")})
    merged.update(
        strategy=spec.strategy, capture=spec.capture, compile=spec.compile, warmup=spec.warmup,
        wall_seconds=result.wall_seconds,
    )
    if result.error and not merged.get("error"):
        merged["error"] = result.error
    if merged.get("error") is None and result.returncode not in (0, None):
        merged["error"] = f"the process exited with status {result.returncode}: {result.stderr_tail[-500:]}"
    try:
        return ScenarioResult.from_dict(merged)
    except SessionError as exc:
        return ScenarioResult(
            spec.strategy, spec.capture, spec.compile, pid=result.pid, warmup=spec.warmup,
            error=f"unreadable worker result: {exc}",
        )


def check_result(result: JobResult | None) -> dict[str, Any]:
    if result is None:
        return {"error": "not run"}
    data = dict(result.data) if result.data is not None else {}
    if result.error and not data.get("error"):
        data["error"] = result.error
    data.setdefault("error", None)
    return data


def assemble(options: CompareOptions, results: dict[str, JobResult]) -> CompareSession:
    """The session from the jobs' results (some may be missing or failed)."""
    from closuretrace.experiment.conclusion import conclude
    from closuretrace.experiment.environment import describe, installed_versions

    scenarios = [scenario_result(s, results.get(f"scenario:{s.name}")) for s in options.scenarios]
    env_raw = check_result(results.get("environment")) if options.checks else {"error": "not run"}
    versions: dict[str, str] = {"closuretrace": __version__}
    versions.update(installed_versions())
    env_versions = env_raw.get("versions")
    if isinstance(env_versions, dict):
        versions.update({str(k): str(v) for k, v in env_versions.items()})
    graph_check = env_raw.get("graph_check")
    environment: dict[str, Any] = {
        "versions": versions,
        "graph_check": graph_check if isinstance(graph_check, dict) else None,
        "graph_check_text": describe(graph_check if isinstance(graph_check, dict) else {"error": env_raw.get("error")}),
        "error": env_raw.get("error"),
        "pid": env_raw.get("pid"),
        "platform": env_raw.get("platform"),
    }
    save_check = check_result(results.get("savecheck")) if options.checks else {"error": "not run"}
    first = options.scenarios[0] if options.scenarios else Scenario("reuse", "scalar", "once")
    data_used = sorted({s.data for s in scenarios if s.data})
    settings: dict[str, Any] = {
        "design": options.design,
        "full": options.full,
        "scenarios": len(options.scenarios),
        "cycles": first.cycles,
        "warmup": first.warmup,
        "epochs": first.epochs,
        "samples": first.samples,
        "batch_size": first.batch_size,
        "capture_mb": options.capture_mb,
        "capture_value": first.capture_value,
        "data": data_used[0] if len(data_used) == 1 else (", ".join(data_used) or options.data_source),
        "model": MODEL_TEXT,
        "jobs": options.jobs,
        "threads_per_job": threads_per_job(options.jobs, len(options.scenarios) + (2 if options.checks else 0)),
        "strategies": {k: v for k, v in STRATEGY_TEXT.items() if any(s.strategy == k for s in options.scenarios)},
        "captures": {k: v for k, v in CAPTURE_TEXT.items() if any(s.capture == k for s in options.scenarios)},
        "compiles": {k: v for k, v in COMPILE_TEXT.items() if any(s.compile == k for s in options.scenarios)},
    }
    failed = any(not s.ok for s in scenarios)
    run = RunInfo(
        argv=list(options.argv),
        command="compare",
        outcome="completed",
        exit_code=1 if failed else 0,
        versions=versions,
    )
    session = CompareSession(
        run=run, settings=settings, environment=environment, scenarios=scenarios, save_check=save_check
    )
    return conclude(session)


def run_compare(options: CompareOptions, quiet: bool = False) -> CompareSession:
    """Run every job and assemble the session. Ctrl-C raises :class:`CompareInterrupted` with what finished."""
    jobs = build_jobs(options)
    with reporter_for(len(jobs), quiet=quiet) as reporter:
        try:
            results = run_jobs(jobs, options.jobs, reporter)
        except Interrupted as exc:
            partial = {r.key: r for r in exc.results}
            session = assemble(options, partial)
            session.run.outcome = "interrupted"
            session.run.exit_code = EXIT_INTERRUPTED
            session.run.error = "KeyboardInterrupt"
            raise CompareInterrupted(session) from None
    return assemble(options, {r.key: r for r in results})
