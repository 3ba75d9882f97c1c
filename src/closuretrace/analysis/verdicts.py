"""Leak verdicts per metric and the types that grow, from the per-cycle readings alone.

This is the one place the leak rule lives: :func:`judge` turns a series into a :data:`VerdictState`. The pytest
plugin's limits, the compare conclusions, ``diff`` and the advice read the verdicts it makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from closuretrace.analysis.stats import fit_slope
from closuretrace.analysis.trend import Trend, describe, trend
from closuretrace.probes import metric_def
from closuretrace.session import CycleSample, GrowingType, Verdict, VerdictState

#: Types whose instance count grows by less than this per cycle are not listed as growing.
TYPE_FLOOR = 0.5
TOP_TYPES = 25
#: The fewest cycles after the warm-up that a verdict is drawn from (a slope's interval needs 3 points).
MIN_CYCLES = 3


def judge(
    series: Sequence[float], floor: float, cycles: Sequence[int] | None = None
) -> tuple[Trend, VerdictState]:
    """The robust trend of ``series`` per cycle (see :func:`closuretrace.analysis.trend.trend`) and its judgement.

    A leak needs at least :data:`MIN_CYCLES` points, a consistent rise (the Mann-Kendall test, one-sided 5%), a
    robust 95% interval clear of zero, a robust slope above ``floor``, and a shape that is neither ``bounded``
    (rose, then stopped) nor ``step`` (one-off jumps, flat otherwise). ``grows``: the interval is clear of zero but
    the rest is not met; ``flat``: it is not.
    """
    t = trend(series, floor, cycles)
    if t.n < MIN_CYCLES:
        return t, "too_few"
    if t.rising and t.slope > floor and t.shape not in ("bounded", "step"):
        return t, "leak"
    return t, "grows" if t.low > 0 else "flat"


def state_of(n: int, slope: float, low: float, floor: float) -> VerdictState:
    """The rule for a verdict read from a file that predates ``state`` (a least-squares slope and interval)."""
    if n < MIN_CYCLES:
        return "too_few"
    if low > 0 and slope > floor:
        return "leak"
    if low > 0:
        return "grows"
    return "flat"


def judge_verdicts(verdicts: Iterable[Verdict]) -> None:
    """Give every verdict its state where it has none (a file written before verdicts carried one)."""
    for v in verdicts:
        if not v.state:
            v.state = state_of(v.n_cycles, v.slope_per_cycle, v.ci_low, v.noise_floor)
            v.leak = v.state == "leak"


def measured(cycles: Sequence[CycleSample], warmup: int) -> list[CycleSample]:
    """The cycles that count for verdicts: all but the first ``warmup`` (never fewer than what is there)."""
    return list(cycles[warmup:]) if len(cycles) > warmup else []


def verdicts(
    cycles: Sequence[CycleSample], warmup: int, floors: Mapping[str, float] | None = None
) -> list[Verdict]:
    """A verdict for every metric the cycles carry: robust slope per cycle, 95% CI, shape, steps, and leak or not
    (the rule is :func:`judge`'s)."""
    floors = floors or {}
    used = measured(cycles, warmup)
    names: list[str] = []
    for c in cycles:
        names.extend(k for k in c.metrics if k not in names)
    out: list[Verdict] = []
    for name in names:
        d = metric_def(name)
        if not d.verdict:
            continue
        series = [c.metrics[name] for c in used if name in c.metrics]
        numbers = [c.index for c in used if name in c.metrics]
        floor = float(floors.get(name, d.noise_floor))
        s, state = judge(series, floor, numbers)
        note = f"needs at least {MIN_CYCLES} cycles after warm-up, has {s.n}" if state == "too_few" else None
        note = note or describe(s, d.unit)
        out.append(
            Verdict(
                metric=name,
                unit=d.unit,
                slope_per_cycle=s.slope,
                ci_low=s.low,
                ci_high=s.high,
                n_cycles=s.n,
                noise_floor=floor,
                leak=state == "leak",
                note=note,
                state=state,
                intercept=s.intercept,
                shape=s.shape,
                estimator=s.estimator,
                steps=list(s.steps),
            )
        )
    return out


def growing_types(census: Sequence[Mapping[str, int]], warmup: int, top: int = TOP_TYPES) -> list[GrowingType]:
    """Types whose instance count rises over the measured cycles, ranked by slope (steepest first).

    Least squares, not the verdicts' Theil-Sen: a census holds thousands of types and this list only ranks them
    (and points the retention search at them), so the cheap fit is enough; no verdict is drawn from it.
    """
    used = list(census[warmup:]) if len(census) > warmup else []
    if len(used) < 2:
        return []
    names = set().union(*used)
    found: list[GrowingType] = []
    for name in names:
        counts = [c.get(name, 0) for c in used]
        if counts[-1] <= counts[0]:
            continue
        s = fit_slope(counts)
        if not (s.slope >= TYPE_FLOOR) or (s.n >= 3 and not s.low > 0):
            continue
        every = all(b > a for a, b in zip(counts, counts[1:]))
        found.append(
            GrowingType(
                type=name,
                counts=counts,
                slope_per_cycle=s.slope,
                ci_low=s.low,
                ci_high=s.high,
                grows_every_cycle=every,
            )
        )
    found.sort(key=lambda g: (not g.grows_every_cycle, -g.slope_per_cycle, g.type))
    return found[:top]
