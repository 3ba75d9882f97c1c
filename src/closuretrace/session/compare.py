"""The compare report: the scenarios of ``closuretrace compare``, their comparisons and conclusion, as plain data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from closuretrace.session.codec import (
    SCHEMA_VERSION,
    SessionError,
    as_list,
    as_object,
    build,
    check_version,
    dumps,
    finite,
    is_number,
    step_values,
    warmup_of,
)
from closuretrace.session.model import CycleSample, GrowingType, RunInfo, Verdict


@dataclass
class ScenarioResult:
    """One scenario of ``closuretrace compare``, measured in its own process (``pid``).

    ``cycles``, ``verdicts`` and ``growing_types`` are the :class:`closuretrace.Profiler`'s own, as in a
    ``profile`` report; ``steps`` adds per cycle the seconds spent in ``compile`` and in ``fit`` (probes left out)
    and the new traces of the model's train function. ``offset`` is the loss ``evaluate()`` reports for the final
    model minus the plain cross-entropy of its predictions: the captured value, when it reaches the loss.
    ``error`` holds what went wrong (a traceback or the tail of a crashed process's stderr).
    """

    strategy: str
    capture: str
    compile: str
    pid: int | None = None
    error: str | None = None
    warmup: int = 1
    cycles: list[CycleSample] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    growing_types: list[GrowingType] = field(default_factory=list)
    retention_roots: list[str] = field(default_factory=list)
    closures_created: int = 0
    closures_alive_end: int = 0
    closure_ids_reused: int = 0
    #: per cycle: {"cycle": i, "compile_s": s, "fit_s": s, "traces": n}
    steps: list[dict[str, Any]] = field(default_factory=list)
    final_loss: float | None = None
    final_accuracy: float | None = None
    eval_loss: float | None = None
    crossentropy: float | None = None
    offset: float | None = None
    capture_nbytes: int | None = None
    data: str = ""
    samples: int = 0
    #: seconds spent in the worker: import, setup, cycles, evaluate, analysis, total
    timings: dict[str, float] = field(default_factory=dict)
    #: the process's wall time, start to exit, as the parent saw it
    wall_seconds: float | None = None

    @property
    def name(self) -> str:
        return f"{self.strategy}/{self.capture}/{self.compile}"

    @property
    def ok(self) -> bool:
        return self.error is None

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)

    def series(self, metric: str) -> list[float]:
        return [c.metrics[metric] for c in self.cycles if metric in c.metrics]

    def _measured_steps(self) -> list[dict[str, Any]]:
        steps = self.steps[self.warmup:] if len(self.steps) > self.warmup else self.steps
        return [s for s in steps if isinstance(s, dict)]

    def _mean_step(self, *keys: str) -> float | None:
        steps = self._measured_steps()
        if not steps:
            return None
        return math.fsum(math.fsum(float(s.get(k) or 0.0) for k in keys) for s in steps) / len(steps)

    @property
    def seconds_per_cycle(self) -> float | None:
        """Mean seconds of compile + fit per cycle after the warm-up (the probes' time left out)."""
        return self._mean_step("compile_s", "fit_s")

    @property
    def compile_seconds_per_cycle(self) -> float | None:
        return self._mean_step("compile_s")

    @property
    def fit_seconds_per_cycle(self) -> float | None:
        return self._mean_step("fit_s")

    @property
    def traces_per_cycle(self) -> float | None:
        """Mean new traces of the train function per cycle after the warm-up."""
        return self._mean_step("traces")

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "capture": self.capture,
            "compile": self.compile,
            "name": self.name,
            "pid": self.pid,
            "error": self.error,
            "warmup": self.warmup,
            "closures_created": self.closures_created,
            "closures_alive_end": self.closures_alive_end,
            "closure_ids_reused": self.closure_ids_reused,
            "final_loss": self.final_loss,
            "final_accuracy": self.final_accuracy,
            "eval_loss": self.eval_loss,
            "crossentropy": self.crossentropy,
            "offset": self.offset,
            # derived from ``steps`` (recomputed on load), written for readers of the JSON
            "seconds_per_cycle": self.seconds_per_cycle,
            "compile_seconds_per_cycle": self.compile_seconds_per_cycle,
            "fit_seconds_per_cycle": self.fit_seconds_per_cycle,
            "traces_per_cycle": self.traces_per_cycle,
            "capture_nbytes": self.capture_nbytes,
            "data": self.data,
            "samples": self.samples,
            "timings": dict(self.timings),
            "wall_seconds": self.wall_seconds,
            "cycles": [c.to_dict() for c in self.cycles],
            "verdicts": [asdict(v) for v in self.verdicts],
            "growing_types": [asdict(g) for g in self.growing_types],
            "retention_roots": list(self.retention_roots),
            "steps": [dict(s) for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: Any) -> ScenarioResult:
        d = as_object(d, "scenario")
        simple = {k: v for k, v in d.items() if k not in ("cycles", "verdicts", "growing_types", "steps")}
        rec: ScenarioResult = build(cls, simple)
        rec.cycles = [CycleSample.from_dict(as_object(c, "cycle")) for c in as_list(d, "cycles")]
        rec.verdicts = [Verdict.from_dict(v) for v in as_list(d, "verdicts")]
        rec.growing_types = [build(GrowingType, g) for g in as_list(d, "growing_types")]
        rec.steps = [step_values(as_object(s, "step")) for s in as_list(d, "steps")]
        rec.retention_roots = [str(r) for r in rec.retention_roots]
        rec.timings = {str(k): float(v) for k, v in rec.timings.items() if is_number(v)}
        return rec


#: What a comparison varies between its two sides.
Factor = Literal["strategy", "compile", "optimizer", "capture"]


@dataclass
class Comparison:
    """One factor compared between scenario groups that differ in that factor only, on one metric.

    ``difference`` is the mean over the pairs of (slope in A - slope in B) per cycle, and ``half_width`` the half
    width of its 95% interval (the pairs' intervals combined). ``step_difference`` is the same difference of the
    median per-cycle steps, which one jump in a single cycle cannot move. ``moves`` holds when both differences
    agree in sign and exceed both the half width and the metric's noise floor ``floor``.
    """

    factor: Factor
    metric: str
    unit: str
    a: str  # e.g. "recreate"
    b: str  # e.g. "reuse"
    setting: str  # what the pairs share, e.g. "capture scalar, compile same-optimizer" or "all settings"
    a_slope: float
    b_slope: float
    difference: float
    half_width: float
    floor: float
    pairs: int
    moves: bool
    step_difference: float = math.nan


@dataclass
class CompareSession:
    """What ``closuretrace compare`` measured and concluded: plain data, saved as JSON with ``kind: "compare"``.

    ``environment`` holds the library versions and the graph-lifetime check (see
    :mod:`closuretrace.experiment.environment`); ``save_check`` what ``model.save``/``load_model`` did with a
    closure loss and with a ``keras.losses.Loss`` subclass; ``comparisons`` the numbers each sentence of
    ``conclusion`` is drawn from.
    """

    run: RunInfo
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    save_check: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    conclusion: list[str] = field(default_factory=list)
    #: one line: which factors move memory and which do not (set by the experiment's conclusion)
    summary: str = ""
    #: scenario names, steepest RSS growth first (set by the experiment's conclusion)
    ranking: list[str] = field(default_factory=list)
    kind: str = "compare"
    schema_version: int = SCHEMA_VERSION

    @property
    def warmup(self) -> int:
        """Cycles left out of every scenario's verdicts (``settings["warmup"]``, else 1)."""
        return warmup_of(self.settings)

    def ranked(self) -> list[ScenarioResult]:
        """The scenarios in :attr:`ranking` order (any not ranked follow, in their own order)."""
        by_name = {s.name: s for s in self.scenarios}
        ranked = [by_name[n] for n in self.ranking if n in by_name]
        return ranked + [s for s in self.scenarios if s not in ranked]

    def scenario(self, strategy: str, capture: str, compile: str) -> ScenarioResult | None:
        return next(
            (s for s in self.scenarios if (s.strategy, s.capture, s.compile) == (strategy, capture, compile)), None
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "run": asdict(self.run),
            "settings": self.settings,
            "environment": self.environment,
            "conclusion": list(self.conclusion),
            "summary": self.summary,
            "ranking": list(self.ranking),
            "comparisons": [asdict(c) for c in self.comparisons],
            "save_check": self.save_check,
            "scenarios": [s.to_dict() for s in self.scenarios],
        }
        out: dict[str, Any] = finite(d)
        return out

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> CompareSession:
        if not isinstance(d, dict) or "schema_version" not in d or "run" not in d:
            raise SessionError("not a closuretrace session (no schema_version/run keys)")
        version = check_version(d["schema_version"])
        if d.get("kind") != "compare":
            raise SessionError(f"not a closuretrace compare report (kind {d.get('kind')!r})")
        try:
            return cls(
                schema_version=version,
                run=build(RunInfo, d["run"]),
                settings=dict(as_object(d.get("settings", {}), "settings")),
                environment=dict(as_object(d.get("environment", {}), "environment")),
                scenarios=[ScenarioResult.from_dict(s) for s in as_list(d, "scenarios")],
                save_check=dict(as_object(d.get("save_check", {}), "save_check")),
                comparisons=[build(Comparison, c) for c in as_list(d, "comparisons")],
                conclusion=[str(c) for c in as_list(d, "conclusion")],
                summary=str(d.get("summary") or ""),
                ranking=[str(n) for n in d.get("ranking") or []],
            )
        except SessionError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SessionError(f"malformed closuretrace compare report: {type(exc).__name__}: {exc}") from None
