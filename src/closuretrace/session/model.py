"""The profile session's dataclasses (see :mod:`closuretrace.session` for what a session is and how to load one)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from closuretrace.session.codec import (
    SCHEMA_VERSION,
    SessionError,
    as_float,
    as_int,
    as_list,
    as_object,
    build,
    check_version,
    conforms,
    dumps,
    finite,
    strings,
    warmup_of,
)
from closuretrace.session.retention import RetentionChain, Verification

#: A verdict's judgement: ``leak``; ``grows`` (rises, but below the noise floor); ``flat``; ``too_few`` (not
#: enough cycles after the warm-up to judge).
VerdictState = Literal["leak", "grows", "flat", "too_few"]
#: What a watched callable is.
CallableKind = Literal["closure", "function", "lambda", "partial", "object", "not callable"]
#: How a callable came to be watched: ``track`` (decorator, --track), ``keras`` (passed to compile), ``census``
#: (found on the heap).
Source = Literal["track", "keras", "census"]
#: How the program ended (see :mod:`closuretrace.outcome`); ``running`` in a snapshot taken before it ended.
OutcomeKind = Literal["completed", "exception", "exit", "interrupted", "terminated", "running"]
#: The report's status: any leak; nothing leaks; or no verdict could be drawn.
Status = Literal["leak", "flat", "inconclusive"]

#: The keys of a cycle object in JSON that are not metrics.
_CYCLE_FIXED = ("index", "label", "seconds", "probe_seconds", "closures_alive_by_factory")

@dataclass(slots=True)
class Capture:
    """One captured value of a closure: a closure cell, a ``functools.partial`` argument or an attribute."""

    name: str
    type: str
    nbytes: int | None
    repr: str


@dataclass(slots=True)
class ClosureRecord:
    """One callable the tool watched, from creation to collection.

    ``serial`` is stable for the run; ``id`` is the CPython address, which the next closure may reuse once this
    one is freed (``reused_id_of`` names the dead record whose id this one took).
    """

    serial: int
    id: int
    factory: str
    qualname: str
    module: str
    kind: CallableKind
    source: Source
    created_cycle: int
    collected_cycle: int | None
    created_at: str | None = None
    args: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    refcount_at_creation: int | None = None
    refcount_at_end: int | None = None
    reused_id_of: int | None = None
    weakrefable: bool = True
    roles: list[str] = field(default_factory=list)

    @property
    def alive_at_end(self) -> bool:
        return self.collected_cycle is None and self.weakrefable

    @property
    def largest_capture(self) -> Capture | None:
        sized = [c for c in self.captures if c.nbytes is not None]
        return max(sized, key=lambda c: c.nbytes or 0) if sized else None


@dataclass
class CycleSample:
    """The probes' readings at the end of one cycle, after ``gc.collect()``."""

    index: int
    label: str
    seconds: float
    probe_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    closures_alive_by_factory: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "label": self.label,
            "seconds": self.seconds,
            "probe_seconds": self.probe_seconds,
        }
        out.update(self.metrics)
        out["closures_alive_by_factory"] = dict(self.closures_alive_by_factory)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CycleSample:
        # null is how a NaN or an infinity was written (see finite): read it back as NaN.
        metrics = {k: math.nan if v is None else v for k, v in d.items() if k not in _CYCLE_FIXED}
        for k, v in metrics.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise SessionError(f"cycle {d.get('index')}: metric {k!r} is not a number")
        by_factory = d.get("closures_alive_by_factory", {})
        if not conforms(by_factory, dict[str, int]):
            raise SessionError(f"cycle {d.get('index')}: closures_alive_by_factory is not an object of counts")
        return cls(
            index=as_int(d, "index"),
            label=str(d.get("label", "")),
            seconds=as_float(d.get("seconds", 0.0)),
            probe_seconds=as_float(d.get("probe_seconds", 0.0)),
            metrics=metrics,
            closures_alive_by_factory=dict(by_factory),
        )


@dataclass
class MetricInfo:
    """What a metric counts, in words a reader needs (units, coverage)."""

    name: str
    unit: str
    label: str
    covers: str = ""


#: A verdict's series, by shape: ``flat``; ``growth`` (a steady rise); ``bounded`` (rose, then stayed flat, e.g. a
#: cache that filled); ``step`` (one-off jumps, flat otherwise); ``undecided`` (too few cycles to tell). ``""`` in
#: files written before shapes.
Shape = Literal["flat", "growth", "bounded", "step", "undecided", ""]


@dataclass
class Step:
    """A one-off jump of a metric: ``delta`` beyond its usual per-cycle change, in the cycle numbered ``cycle``."""

    cycle: int
    delta: float


@dataclass
class Verdict:
    """Growth of one metric per cycle: a robust slope with its 95% confidence interval, and the verdict.

    ``state`` is the judgement (see :data:`VerdictState`); ``leak`` is ``state == "leak"``, kept for readers of
    the JSON. Both are set by :mod:`closuretrace.analysis.verdicts`, the one place the rule lives. ``estimator``
    names how the slope and its interval were fitted (``theil-sen``; ``least-squares`` with fewer than 5 cycles
    and in files written before robust verdicts); ``steps`` are the one-off jumps left out of the slope and
    ``shape`` is the series' shape (see :data:`Shape`).
    """

    metric: str
    unit: str
    slope_per_cycle: float
    ci_low: float
    ci_high: float
    n_cycles: int
    noise_floor: float
    leak: bool
    note: str | None = None
    #: ``""`` only for a verdict read from a file that predates states (the reader judges it)
    state: VerdictState | Literal[""] = ""
    #: the fitted line's value at the first measured cycle (charts draw the fit from it; NaN when unknown)
    intercept: float = math.nan
    shape: str = ""
    estimator: str = ""
    steps: list[Step] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Any) -> Verdict:
        """A verdict from JSON; files written before robust verdicts have no shape, steps or estimator (their
        slopes were least-squares)."""
        d = as_object(d, "verdict")
        v: Verdict = build(cls, d)
        v.steps = [build(Step, s) for s in v.steps]
        if "estimator" not in d:
            v.estimator = "least-squares"
        return v


@dataclass
class GrowingType:
    """A type whose live instance count grew over the measured cycles."""

    type: str
    counts: list[int]
    slope_per_cycle: float
    ci_low: float
    ci_high: float
    grows_every_cycle: bool


@dataclass
class Event:
    """Something the hooks saw happen in a cycle (a Keras ``compile`` or ``fit``)."""

    cycle: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunInfo:
    """How the profiled program was started and how it ended."""

    argv: list[str]
    outcome: OutcomeKind = "completed"
    exit_code: int = 0
    error: str | None = None
    command: str = "profile"
    started_at: str = ""
    duration_s: float = 0.0
    cwd: str = ""
    python: str = ""
    platform: str = ""
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Session:
    """Everything one run measured and concluded. See ``docs`` in the README for the JSON schema."""

    run: RunInfo
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: list[MetricInfo] = field(default_factory=list)
    cycles: list[CycleSample] = field(default_factory=list)
    closures: list[ClosureRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    growing_types: list[GrowingType] = field(default_factory=list)
    retention: list[RetentionChain] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    kind: str = "profile"
    schema_version: int = SCHEMA_VERSION
    #: the report's status and the sentence that follows its opening word (set by the analysis)
    status: Status | Literal[""] = ""
    finding: str = ""
    #: per metric whose growth no Python object found explains, a plain sentence (native memory, C holders)
    unexplained: list[str] = field(default_factory=list)
    #: counterfactual re-runs (``--verify``); empty when none was asked for
    verification: list[Verification] = field(default_factory=list)

    # -- derived views (never stored twice) -------------------------------------------------------------
    @property
    def warmup(self) -> int:
        """Cycles left out of the verdicts: ``settings["warmup"]``, or 1 where a file says nothing usable."""
        return warmup_of(self.settings)

    @property
    def finished_normally(self) -> bool:
        """The program ran to its end or exited with status 0 (``sys.exit(0)`` is a normal end)."""
        return self.run.exit_code == 0 and self.run.outcome in ("completed", "exit")

    def metric_info(self, name: str) -> MetricInfo:
        for m in self.metrics:
            if m.name == name:
                return m
        return MetricInfo(name=name, unit="", label=name)

    def series(self, metric: str) -> list[float]:
        return [c.metrics[metric] for c in self.cycles if metric in c.metrics]

    def leaks(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.leak]

    def verdict(self, metric: str) -> Verdict | None:
        """The verdict for ``metric``, if the session has one."""
        return next((v for v in self.verdicts if v.metric == metric), None)

    def chain_for(self, metric: str) -> RetentionChain | None:
        """The found retention chain that explains ``metric``, if any."""
        return next((c for c in self.retention if metric in c.metrics and c.found), None)

    def factories(self) -> dict[str, list[ClosureRecord]]:
        out: dict[str, list[ClosureRecord]] = {}
        for rec in self.closures:
            out.setdefault(rec.factory, []).append(rec)
        return out

    # -- JSON --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "run": asdict(self.run),
            "settings": self.settings,
            "metrics": [asdict(m) for m in self.metrics],
            "cycles": [c.to_dict() for c in self.cycles],
            "closures": [asdict(c) for c in self.closures],
            "events": [asdict(e) for e in self.events],
            "verdicts": [asdict(v) for v in self.verdicts],
            "growing_types": [asdict(g) for g in self.growing_types],
            "retention": [r.to_dict() for r in self.retention],
            "advice": list(self.advice),
            "status": self.status,
            "finding": self.finding,
            "unexplained": list(self.unexplained),
            "verification": [asdict(v) for v in self.verification],
        }
        out: dict[str, Any] = finite(d)
        return out

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> Session:
        if not isinstance(d, dict) or "schema_version" not in d or "run" not in d:
            raise SessionError("not a closuretrace session (no schema_version/run keys)")
        version = check_version(d["schema_version"])
        try:
            return cls(
                schema_version=version,
                kind=str(d.get("kind", "profile")),
                run=build(RunInfo, d["run"]),
                settings=dict(d.get("settings", {})),
                metrics=[build(MetricInfo, m) for m in as_list(d, "metrics")],
                cycles=[CycleSample.from_dict(as_object(c, "cycle")) for c in as_list(d, "cycles")],
                closures=[_closure(c) for c in as_list(d, "closures")],
                events=[build(Event, e) for e in as_list(d, "events")],
                verdicts=[Verdict.from_dict(v) for v in as_list(d, "verdicts")],
                growing_types=[build(GrowingType, g) for g in as_list(d, "growing_types")],
                retention=[RetentionChain.from_dict(r) for r in as_list(d, "retention")],
                advice=strings(d, "advice"),
                status=_status(d.get("status")),
                finding=str(d.get("finding", "")),
                unexplained=strings(d, "unexplained"),
                verification=[build(Verification, v) for v in as_list(d, "verification")],
            )
        except SessionError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SessionError(f"malformed closuretrace session: {type(exc).__name__}: {exc}") from None


def _closure(d: Any) -> ClosureRecord:
    rec: ClosureRecord = build(ClosureRecord, d)
    rec.captures = [build(Capture, c) for c in rec.captures]
    return rec


def _status(value: Any) -> Status | Literal[""]:
    """A status read from a file: one of :data:`Status`, else ``""`` (the reader judges the session again)."""
    if value == "leak":
        return "leak"
    if value == "flat":
        return "flat"
    if value == "inconclusive":
        return "inconclusive"
    return ""
