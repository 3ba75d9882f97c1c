"""Limits a test sets with ``@pytest.mark.closuretrace(...)``, and how a recorded session is checked against them.

This module knows nothing about pytest: it turns marker arguments into :class:`Limits`, a finished
:class:`~closuretrace.session.Session` into one :class:`Check` per limit, and a test's outcome into a
:class:`RecordedTest` (plain data that crosses pytest-xdist and goes into the run report, :class:`RunReport`).

What each limit means
---------------------

``max_alive_closures=N``
    At most ``N`` closures made while the test function ran may still be alive once the test's fixtures are
    torn down (after a full garbage collection). A closure is a function with captured variables that the
    profiler watches: found on the heap with user code (not the stdlib's, site-packages' or closuretrace's),
    returned by an ``@closuretrace.track`` factory, or passed to Keras ``compile``. Not counted: closures alive
    before the test started (module-level ones, those an earlier test leaked), plain functions (a module's
    functions live as long as the module), ``functools.partial`` objects and callable objects such as a
    ``keras.losses.Loss`` (they are listed in the summary, not counted).

``max_rss_growth=SIZE`` (bytes, or a string such as ``"2 MiB"``, ``"500KB"``)
    Resident set size may grow by at most ``SIZE`` **per cycle**. Broken when the least-squares slope over the
    cycles after the warm-up is above ``SIZE`` *and* its 95% confidence interval lies above zero: growth must
    be both too steep and statistically real, so one noisy reading does not fail a test. RSS is the whole
    process's, the profiler's own per-cycle records included (a type census: about 10 KiB per cycle in a small
    process, about 150 KiB with TensorFlow loaded), so limits below 256 KiB per cycle (the RSS noise floor of
    ``closuretrace profile``) measure the tool as much as the test.

``max_object_growth=N``
    The same rule for the number of objects tracked by Python's garbage collector (the tool's own excluded);
    ``max_object_growth=0`` fails on any growth the data can tell from noise.

``warmup=N`` (default 1)
    Cycles left out at the start: the first cycle builds caches (a first Keras ``fit`` traces its graph).

A growth limit needs at least 3 cycles after the warm-up; with fewer it cannot be checked, and the check
fails and says so, so a test never passes a limit that was not measured. The one exception is a benchmark
that ran only once because benchmarks are disabled (``--benchmark-disable``, xdist): the growth checks are
then skipped, and said to be.

A marker with no limit (``@pytest.mark.closuretrace``) records the test for the run report and never fails it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from closuretrace.analysis.verdicts import MIN_CYCLES
from closuretrace.session import Session
from closuretrace.session.pytest_run import BREACHED, FAILING, OK, SKIPPED, UNMEASURED, RecordedTest
from closuretrace.units import finite_or_none, fmt_value, parse_size

#: Marker argument -> what it limits, for error messages and the marker's help line.
LIMIT_ARGS: dict[str, str] = {
    "max_alive_closures": "closures made by the test still alive after teardown",
    "max_rss_growth": "RSS growth per cycle (bytes or a size like '2 MiB')",
    "max_object_growth": "gc objects growth per cycle",
    "warmup": "cycles left out at the start (default 1)",
}

#: Growth limits: marker argument -> metric.
GROWTH_METRICS: dict[str, str] = {"max_rss_growth": "rss_bytes", "max_object_growth": "gc_objects"}



class MarkerError(ValueError):
    """A ``closuretrace`` marker argument that cannot be used; the message is one line naming the argument."""


@dataclass(frozen=True)
class Limits:
    """The limits of one test (``None``: not limited). Sizes are bytes."""

    max_alive_closures: int | None = None
    max_rss_growth: float | None = None
    max_object_growth: float | None = None
    warmup: int = 1

    @property
    def has_limits(self) -> bool:
        """Whether any limit is set (the warm-up alone is not a limit)."""
        return any(v is not None for v in (self.max_alive_closures, self.max_rss_growth, self.max_object_growth))

    def thresholds(self) -> dict[str, float]:
        """Metric -> noise floor for the profiler, so the session's verdicts use the test's limits."""
        out: dict[str, float] = {}
        for arg, metric in GROWTH_METRICS.items():
            value = getattr(self, arg)
            if value is not None:
                out[metric] = float(value)
        return out

    def to_dict(self) -> dict[str, float | int]:
        """The limits that are set, and the warm-up."""
        out: dict[str, float | int] = {k: v for k, v in asdict(self).items() if v is not None}
        return out


def _count(name: str, value: Any, whole: bool) -> float:
    what = "a whole number >= 0" if whole else "a number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MarkerError(f"{name}={value!r}: expected {what}")
    if whole and not isinstance(value, int):
        raise MarkerError(f"{name}={value!r}: expected {what}")
    if not math.isfinite(value) or value < 0:
        negative = " (a limit cannot be negative)" if value < 0 else ""
        raise MarkerError(f"{name}={value!r}: must be {what}{negative}")
    return value


def _size(name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            return float(parse_size(value))
        except ValueError as exc:
            raise MarkerError(f"{name}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MarkerError(f"{name}={value!r}: expected bytes (a number >= 0) or a size such as '2 MiB'")
    if not math.isfinite(value) or value < 0:
        negative = " (a limit cannot be negative)" if value < 0 else ""
        raise MarkerError(f"{name}={value!r}: must be a size >= 0{negative}")
    return float(value)


def parse_limits(markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> Limits:
    """:class:`Limits` from the ``(args, kwargs)`` of a test's ``closuretrace`` markers, closest first.

    A limit set by a closer marker (the function's) wins over one set further out (the class's, the module's
    ``pytestmark``); limits set only further out still apply. Raise :class:`MarkerError` for a positional
    argument, an unknown keyword, a malformed size or a negative limit.

    >>> parse_limits([((), {"max_rss_growth": "2 MiB"}), ((), {"max_rss_growth": 1, "warmup": 2})])
    Limits(max_alive_closures=None, max_rss_growth=2097152.0, max_object_growth=None, warmup=2)
    """
    values: dict[str, Any] = {}
    for args, kwargs in markers:
        if args:
            raise MarkerError(
                f"positional argument {args[0]!r}: use keywords ({', '.join(f'{k}=' for k in LIMIT_ARGS)})"
            )
        for name, value in kwargs.items():
            if name not in LIMIT_ARGS:
                raise MarkerError(f"unknown argument {name}={value!r} (known: {', '.join(LIMIT_ARGS)})")
            if name in values:
                continue  # a closer marker set it
            if name == "max_rss_growth":
                values[name] = _size(name, value)
            elif name in ("max_alive_closures", "warmup"):
                values[name] = int(_count(name, value, whole=True))
            else:
                values[name] = float(_count(name, value, whole=False))
    return Limits(**values)


@dataclass
class Check:
    """One limit checked against one test's session."""

    limit: str  # marker argument, e.g. "max_rss_growth"
    limit_value: float
    metric: str
    unit: str
    status: str  # BREACHED | UNMEASURED | OK | SKIPPED
    #: the measured value: slope per cycle for growth limits, a count for max_alive_closures (None: unmeasured)
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    @property
    def brief(self) -> str:
        """A few words: ``max_alive_closures=1 (5 alive after teardown)``."""
        head = _limit_text(self.limit, self.limit_value, self.unit)
        if self.value is None:
            return f"{head} ({'not measured: too few cycles' if self.status == UNMEASURED else 'not checked'})"
        if self.limit == "max_alive_closures":
            return f"{head} ({fmt_value(self.value, '')} alive after teardown)"
        return f"{head} ({fmt_value(self.value, self.unit, True)} per cycle)"


def _limit_text(limit: str, value: float, unit: str) -> str:
    per = " per cycle" if limit in GROWTH_METRICS else ""
    return f"{limit}={fmt_value(value, unit)}{per}"


def alive_closures(session: Session, skip_serials: Iterable[int] = ()) -> dict[str, int]:
    """Factory -> closures still alive at the end of the session (serials in ``skip_serials`` left out)."""
    skip = set(skip_serials)
    out: dict[str, int] = {}
    for rec in session.closures:
        if rec.alive_at_end and rec.serial not in skip:
            out[rec.factory] = out.get(rec.factory, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def evaluate(
    session: Session,
    limits: Limits,
    *,
    skip_serials: Iterable[int] = (),
    growth_unmeasurable: str | None = None,
) -> list[Check]:
    """One :class:`Check` per limit set in ``limits``.

    ``skip_serials``: closure records that ``max_alive_closures`` does not count (alive before the test, not
    closures: see the module docstring).
    ``growth_unmeasurable``: a reason why too few cycles is expected (a disabled benchmark); growth limits are
    then skipped instead of failed when there are too few cycles.
    """
    checks: list[Check] = []
    if limits.max_alive_closures is not None:
        by_factory = alive_closures(session, skip_serials)
        n = sum(by_factory.values())
        limit = limits.max_alive_closures
        which = ", ".join(f"{f} ({k})" for f, k in list(by_factory.items())[:5]) or "none"
        root = next(
            (c.root for c in session.retention if "closures_alive" in c.metrics and c.found and c.root),
            None,
        )
        held = f"; held by {root}" if root else ""
        checks.append(
            Check(
                limit="max_alive_closures",
                limit_value=limit,
                metric="closures_alive",
                unit="closures",
                status=BREACHED if n > limit else OK,
                value=n,
                detail=f"max_alive_closures={limit}: {n} closure{'s' if n != 1 else ''} made by the test "
                f"{'are' if n != 1 else 'is'} alive after teardown, by factory: {which}{held}",
            )
        )
    warmup = int(session.settings.get("warmup", limits.warmup))
    for arg, metric in GROWTH_METRICS.items():
        limit_value = getattr(limits, arg)
        if limit_value is None:
            continue
        verdict = session.verdict(metric)
        info = session.metric_info(metric)
        unit = info.unit or ("bytes" if metric == "rss_bytes" else "objects")
        head = _limit_text(arg, limit_value, unit)
        n = verdict.n_cycles if verdict is not None else 0
        if verdict is None or verdict.state == "too_few":
            total = len(session.cycles)
            if growth_unmeasurable:
                status, detail = SKIPPED, f"{head}: not checked, {growth_unmeasurable}"
            else:
                status = UNMEASURED
                detail = (
                    f"{head}: cannot be checked, it needs at least {MIN_CYCLES} cycles after {warmup} warm-up "
                    f"and the test ran {total} cycle{'s' if total != 1 else ''}; end cycles with "
                    "`with closuretrace.cycle():`, Keras fit(), or a benchmark"
                )
            checks.append(Check(arg, limit_value, metric, unit, status, None, detail=detail))
            continue
        slope, low, high = verdict.slope_per_cycle, verdict.ci_low, verdict.ci_high
        # The session was judged with the limit as the metric's noise floor (Limits.thresholds), so its
        # verdict is the check: one rule, in analysis.verdicts.
        breached = verdict.state == "leak"
        label = info.label or metric
        ci = f"[{fmt_value(low, unit, True)}, {fmt_value(high, unit, True)}]"
        why = (
            "above the limit and the 95% CI is above 0"
            if breached
            else ("within the limit" if not slope > limit_value else "above the limit, but the 95% CI includes 0")
        )
        checks.append(
            Check(
                limit=arg,
                limit_value=limit_value,
                metric=metric,
                unit=unit,
                status=BREACHED if breached else OK,
                value=slope,
                ci_low=low,
                ci_high=high,
                detail=f"{head}: {label} grew {fmt_value(slope, unit, True)} per cycle, 95% CI {ci}, over {n} "
                f"cycles after {warmup} warm-up: {why}",
            )
        )
    return checks


def failure_text(checks: Sequence[Check], session: Session) -> str:
    """The failure message of a test: a line that names every limit broken (what ``pytest -rf`` shows), one
    line per limit with the measurement, then the summary ``closuretrace profile`` prints, formatted by the same
    code (:func:`closuretrace.renderers.text.render`)."""
    from closuretrace.renderers.text import render

    failed = [c for c in checks if c.failed]
    lines = [f"closuretrace limit{'s' if len(failed) != 1 else ''} broken: {'; '.join(c.brief for c in failed)}"]
    lines += [f"  {c.detail}" for c in failed]
    return "\n".join(lines) + "\n\n" + render(session)


# -- what crosses xdist and goes into the run report -----------------------------------------------------------

def record_test(
    nodeid: str,
    outcome: str,
    session: Session,
    limits: Limits,
    checks: Sequence[Check],
    skip_serials: Iterable[int] = (),
    worker: str | None = None,
) -> RecordedTest:
    """What crosses xdist and goes into the run report for one test."""
    alive = alive_closures(session, skip_serials)
    verdicts = [
        {
            "metric": v.metric,
            "label": session.metric_info(v.metric).label or v.metric,
            "unit": v.unit,
            "slope_per_cycle": finite_or_none(v.slope_per_cycle),
            "ci_low": finite_or_none(v.ci_low),
            "ci_high": finite_or_none(v.ci_high),
            "n_cycles": v.n_cycles,
            "leak": v.leak,
            "state": v.state,
        }
        for v in session.verdicts
    ]
    checks_out = []
    for c in checks:
        d = asdict(c)
        for key in ("value", "ci_low", "ci_high"):
            d[key] = finite_or_none(d[key])
        checks_out.append(d)
    root = next((c.root for c in session.retention if c.found and c.root), None)
    return RecordedTest(
        nodeid=nodeid,
        outcome=outcome,
        duration_s=round(session.run.duration_s, 4),
        cycles=len(session.cycles),
        warmup=int(session.settings.get("warmup", limits.warmup)),
        worker=worker,
        limits=limits.to_dict(),
        checks=checks_out,
        verdicts=verdicts,
        closures_alive=sum(alive.values()),
        closures_alive_by_factory=dict(list(alive.items())[:10]),
        retention_root=root,
        min_cycles=MIN_CYCLES,
    )
