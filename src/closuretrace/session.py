"""The session: what one run measured, as plain data.

A :class:`Session` holds no live objects (no closures, no models, no weak references): only numbers and
strings, so it can be saved as versioned JSON, loaded back in another process and rendered again. Everything
the instrumentation and the probes see is turned into these dataclasses by :class:`closuretrace.Profiler`;
the analysis fills in verdicts, retention chains and advice; the renderers only read them.

Example::

    >>> from closuretrace.session import load_session
    >>> session = load_session("reports/train-20261124T120000Z.json")   # doctest: +SKIP
    >>> [v.metric for v in session.verdicts if v.leak]                   # doctest: +SKIP
    ['rss_bytes', 'gc_objects', 'tf_func_graphs']
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import types
import typing
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

#: The keys of a cycle object in JSON that are not metrics.
_CYCLE_FIXED = ("index", "label", "seconds", "probe_seconds", "closures_alive_by_factory")


class SessionError(ValueError):
    """A file that is not a closuretrace session this version can read; the message is one line for users."""


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
    kind: str  # "closure" | "function" | "lambda" | "partial" | "object"
    source: str  # "track" (decorator, --track) | "keras" (passed to compile) | "census" (found on the heap)
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
        # null is how a NaN or an infinity was written (see _finite): read it back as NaN.
        metrics = {k: math.nan if v is None else v for k, v in d.items() if k not in _CYCLE_FIXED}
        for k, v in metrics.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise SessionError(f"cycle {d.get('index')}: metric {k!r} is not a number")
        by_factory = d.get("closures_alive_by_factory", {})
        if not _conforms(by_factory, dict[str, int]):
            raise SessionError(f"cycle {d.get('index')}: closures_alive_by_factory is not an object of counts")
        return cls(
            index=_int(d, "index"),
            label=str(d.get("label", "")),
            seconds=_float(d.get("seconds", 0.0)),
            probe_seconds=_float(d.get("probe_seconds", 0.0)),
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


@dataclass
class Verdict:
    """Growth of one metric per cycle: least-squares slope with a 95% confidence interval, and the verdict.

    ``leak`` holds only when the interval is clear of zero *and* the slope exceeds ``noise_floor``.
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
class RetentionChain:
    """Referrer chain from a root (module global, registry) down to an object kept alive, root first."""

    target: str
    metric: str
    chain: list[str]
    found: bool
    born_cycle: int | None = None
    root: str | None = None
    note: str | None = None
    #: qualified type name of the target (as in ``growing_types``)
    target_type: str | None = None


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
    outcome: str = "completed"  # "completed" | "exception" | "exit" | "interrupted" | "terminated"
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

    # -- derived views (never stored twice) -------------------------------------------------------------
    @property
    def warmup(self) -> int:
        """Cycles left out of the verdicts: ``settings["warmup"]``, or 1 where a file says nothing usable."""
        return _warmup(self.settings)

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
            "retention": [asdict(r) for r in self.retention],
            "advice": list(self.advice),
        }
        out: dict[str, Any] = _finite(d)
        return out

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> Session:
        if not isinstance(d, dict) or "schema_version" not in d or "run" not in d:
            raise SessionError("not a closuretrace session (no schema_version/run keys)")
        version = d["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise SessionError(f"not a closuretrace session (schema_version {version!r})")
        if version > SCHEMA_VERSION:
            raise SessionError(
                f"session schema_version {version} is newer than this closuretrace reads ({SCHEMA_VERSION}); "
                "upgrade closuretrace"
            )
        if version < 1:
            raise SessionError(f"unknown session schema_version {version}")
        try:
            return cls(
                schema_version=version,
                kind=str(d.get("kind", "profile")),
                run=_build(RunInfo, d["run"]),
                settings=dict(d.get("settings", {})),
                metrics=[_build(MetricInfo, m) for m in _list(d, "metrics")],
                cycles=[CycleSample.from_dict(_obj(c, "cycle")) for c in _list(d, "cycles")],
                closures=[_closure(c) for c in _list(d, "closures")],
                events=[_build(Event, e) for e in _list(d, "events")],
                verdicts=[_build(Verdict, v) for v in _list(d, "verdicts")],
                growing_types=[_build(GrowingType, g) for g in _list(d, "growing_types")],
                retention=[_build(RetentionChain, r) for r in _list(d, "retention")],
                advice=_strings(d, "advice"),
            )
        except SessionError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SessionError(f"malformed closuretrace session: {type(exc).__name__}: {exc}") from None


# -- loading and saving -----------------------------------------------------------------------------------

def load_session(path: str | os.PathLike[str]) -> Session | CompareSession:
    """Read a session JSON file; raise :class:`SessionError` with a one-line message if it is not one.

    A ``closuretrace profile`` report gives a :class:`Session`, a ``closuretrace compare`` report (``kind:
    "compare"``) a :class:`CompareSession`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SessionError(f"{p}: is a directory, not a session file") from None
    except UnicodeDecodeError:
        raise SessionError(f"{p}: not a text file (not a closuretrace session)") from None
    except OSError as exc:
        raise SessionError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg}); truncated?") from None
    except RecursionError:
        raise SessionError(f"{p}: JSON nested too deeply") from None
    if _too_deep(data):
        raise SessionError(f"{p}: JSON nested more than {MAX_DEPTH} levels (not a closuretrace session)")
    try:
        if isinstance(data, dict) and data.get("kind") == "compare":
            return CompareSession.from_dict(data)
        return Session.from_dict(data)
    except SessionError as exc:
        raise SessionError(f"{p}: {exc}") from None


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        # backslashreplace: a lone surrogate (a non-UTF-8 argv or path) must not cost the user the report.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
        # mkstemp makes the file private (0600); a report is for sharing, so follow the umask like open() does.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


# -- helpers ------------------------------------------------------------------------------------------------

#: A session nests about 6 levels; free-form fields (settings, event details) add a few. Deeper is refused, so
#: no renderer meets a structure it would recurse through.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(data: Any) -> str:
    """JSON text; lone surrogates (from non-UTF-8 argv or paths) written as ``\\uXXXX`` so the file is UTF-8."""
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _warmup(settings: dict[str, Any]) -> int:
    w = settings.get("warmup", 1)
    return w if isinstance(w, int) and not isinstance(w, bool) and w >= 0 else 1


def _float(v: Any) -> float:
    if v is None:
        return math.nan
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise SessionError(f"malformed closuretrace session: {v!r:.40} is not a number")
    return float(v)


def _strings(d: dict[str, Any], key: str) -> list[str]:
    items = _list(d, key)
    if not all(isinstance(a, str) for a in items):
        raise SessionError(f"malformed closuretrace session: {key!r} holds something other than text")
    return list(items)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: turn them into null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _obj(x: Any, what: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise SessionError(f"malformed closuretrace session: a {what} is not an object")
    return x


def _list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key, [])
    if not isinstance(v, list):
        raise SessionError(f"malformed closuretrace session: {key!r} is not a list")
    return v


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise SessionError(f"malformed closuretrace session: {key!r} is not an integer")
    return v


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON) has the type a dataclass field declares: ``int | None``, ``list[str]``..."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(hint)
        return isinstance(value, dict) and all(_conforms(a, k) and _conforms(b, v) for a, b in value.items())
    if isinstance(hint, type) and is_dataclass(hint):
        return isinstance(value, dict)  # built by the caller
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _build(cls: Any, d: Any) -> Any:
    """``cls`` from a JSON object, every field checked against its declared type (null only where optional;
    null in a float field is how NaN and infinities are written, see :func:`_finite`)."""
    d = _obj(d, cls.__name__)
    known = cls.__dataclass_fields__
    obj = cls(**{k: v for k, v in d.items() if k in known})
    hints = _hints(cls)
    for name in known:
        v = getattr(obj, name)
        hint = hints[name]
        if v is None and hint is float:
            setattr(obj, name, math.nan)
        elif not _conforms(v, hint):
            raise SessionError(
                f"malformed closuretrace session: {cls.__name__}.{name} is not {_hint_words(hint)} ({v!r:.40})"
            )
    return obj


def _hint_words(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _closure(d: Any) -> ClosureRecord:
    rec: ClosureRecord = _build(ClosureRecord, d)
    rec.captures = [_build(Capture, c) for c in rec.captures]
    return rec


# -- closuretrace compare ---------------------------------------------------------------------------------------

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
        d = _obj(d, "scenario")
        simple = {k: v for k, v in d.items() if k not in ("cycles", "verdicts", "growing_types", "steps")}
        rec: ScenarioResult = _build(cls, simple)
        rec.cycles = [CycleSample.from_dict(_obj(c, "cycle")) for c in _list(d, "cycles")]
        rec.verdicts = [_build(Verdict, v) for v in _list(d, "verdicts")]
        rec.growing_types = [_build(GrowingType, g) for g in _list(d, "growing_types")]
        rec.steps = [_step(_obj(s, "step")) for s in _list(d, "steps")]
        rec.retention_roots = [str(r) for r in rec.retention_roots]
        rec.timings = {str(k): float(v) for k, v in rec.timings.items() if _number(v)}
        return rec


@dataclass
class Comparison:
    """One factor compared between scenario groups that differ in that factor only, on one metric.

    ``difference`` is the mean over the pairs of (slope in A - slope in B) per cycle, and ``half_width`` the half
    width of its 95% interval (the pairs' intervals combined). ``step_difference`` is the same difference of the
    median per-cycle steps, which one jump in a single cycle cannot move. ``moves`` holds when both differences
    agree in sign and exceed both the half width and the metric's noise floor ``floor``.
    """

    factor: str  # "strategy" | "compile" | "optimizer" | "capture"
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
    kind: str = "compare"
    schema_version: int = SCHEMA_VERSION

    @property
    def warmup(self) -> int:
        """Cycles left out of every scenario's verdicts (``settings["warmup"]``, else 1)."""
        return _warmup(self.settings)

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
            "comparisons": [asdict(c) for c in self.comparisons],
            "save_check": self.save_check,
            "scenarios": [s.to_dict() for s in self.scenarios],
        }
        out: dict[str, Any] = _finite(d)
        return out

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> CompareSession:
        if not isinstance(d, dict) or "schema_version" not in d or "run" not in d:
            raise SessionError("not a closuretrace session (no schema_version/run keys)")
        version = _check_version(d["schema_version"])
        if d.get("kind") != "compare":
            raise SessionError(f"not a closuretrace compare report (kind {d.get('kind')!r})")
        try:
            return cls(
                schema_version=version,
                run=_build(RunInfo, d["run"]),
                settings=dict(_obj(d.get("settings", {}), "settings")),
                environment=dict(_obj(d.get("environment", {}), "environment")),
                scenarios=[ScenarioResult.from_dict(s) for s in _list(d, "scenarios")],
                save_check=dict(_obj(d.get("save_check", {}), "save_check")),
                comparisons=[_build(Comparison, c) for c in _list(d, "comparisons")],
                conclusion=[str(c) for c in _list(d, "conclusion")],
            )
        except SessionError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SessionError(f"malformed closuretrace compare report: {type(exc).__name__}: {exc}") from None


def _number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def _step(d: dict[str, Any]) -> dict[str, Any]:
    """One cycle's timing and trace count; values that are not finite numbers are dropped."""
    return {str(k): v for k, v in d.items() if _number(v)}


def _check_version(version: Any) -> int:
    if not isinstance(version, int) or isinstance(version, bool):
        raise SessionError(f"not a closuretrace session (schema_version {version!r})")
    if version > SCHEMA_VERSION:
        raise SessionError(
            f"session schema_version {version} is newer than this closuretrace reads ({SCHEMA_VERSION}); "
            "upgrade closuretrace"
        )
    if version < 1:
        raise SessionError(f"unknown session schema_version {version}")
    return version
