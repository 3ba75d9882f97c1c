"""A metric's trend over the measured cycles: robust slope and interval, one-off steps, and the series' shape.

:func:`trend` is the one entry: it finds one-off jumps (:func:`find_steps`), splits the series at them, fits one
Theil-Sen slope with Sen's interval and runs the Mann-Kendall test over pairs within the segments (so a jump
moves neither), measures each jump as the difference between the levels of its segments, and classifies the
shape:

* ``step``: one or two one-off jumps, flat otherwise;
* ``bounded``: rose, then stayed within the noise of one level for the last :func:`plateau_min` cycles or more;
* ``growth``: a consistent rise (Mann-Kendall) with an interval clear of zero, over :data:`DECIDE_AT` cycles or more;
* ``undecided``: rising, but over fewer cycles than a cache that fills could be told from a leak by (or fewer
  than :data:`MIN_POINTS` points: nothing can be told);
* ``flat``: none of these.

The thresholds are constants below; ``docs/statistics.md`` says why each and how the interval covers the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from closuretrace.analysis.stats import MAX_POINTS, fit_slope, mann_kendall, median, theil_sen
from closuretrace.session import Shape, Step
from closuretrace.units import fmt_value

#: Fewer points than this: no shape or verdict at all (a slope's interval needs 3 points).
MIN_POINTS = 3
#: From this many points on, Theil-Sen with Sen's interval; below it no 95% rank interval exists, so the slope
#: and interval are least squares (``estimator == "least-squares"``).
ROBUST_FROM = 5
#: One-sided level of the Mann-Kendall test for a rise.
ALPHA = 0.05
#: A per-cycle change is a step when it is this many robust standard deviations (1.4826 x the median absolute
#: deviation) away from the median change ...
STEP_MADS = 6.0
#: ... and this many times the median change itself (a leak's lumpier cycle is not a step) ...
STEP_REL = 3.0
#: ... and at most this many such changes, one per 5 changes at most: more are the trend itself (a staircase).
MAX_STEPS = 2
#: A plateau lasts at least this many cycles, and at least this fraction of the measured cycles.
PLATEAU_MIN = 5
PLATEAU_FRACTION = 0.25
#: A plateau is a level the values stay within max(noise floor, this many robust standard deviations of the noise
#: at that level) of.
PLATEAU_SDS = 3.0
#: A plateau's own slope (the upper end of its 95% interval) is at most this fraction of the rate at which the
#: series rose to it.
PLATEAU_SLOPE_RATIO = 0.5
#: A rise over fewer measured cycles than this could still be a cache that fills: its shape is ``undecided``.
DECIDE_AT = 2 * PLATEAU_MIN


@dataclass(frozen=True)
class Trend:
    """What :func:`trend` found in one series (slopes per cycle, in the series' unit)."""

    slope: float
    low: float
    high: float
    n: int
    intercept: float
    estimator: str
    #: one-sided Mann-Kendall p-value for a rise, on the series with its steps taken out
    p_rise: float
    shape: Shape
    steps: list[Step] = field(default_factory=list)
    #: for ``bounded``: the level and the cycle it was reached in, and how many cycles followed at that level
    plateau: float | None = None
    plateau_cycle: int | None = None
    flat_for: int = 0

    @property
    def rising(self) -> bool:
        """A consistent rise: Mann-Kendall significant and the slope's interval clear of zero."""
        return self.p_rise < ALPHA and self.low > 0


def plateau_min(n: int) -> int:
    """The fewest cycles at one level that make a plateau in a series of ``n`` points."""
    return max(PLATEAU_MIN, math.ceil(PLATEAU_FRACTION * n))


def find_steps(values: Sequence[float], floor: float = 0.0) -> list[tuple[int, float]]:
    """One-off jumps as ``(position after the jump, excess over the median change)``.

    A change ``values[i+1] - values[i]`` is a step when its distance from the median change exceeds the noise
    floor, :data:`STEP_MADS` robust standard deviations of the changes and :data:`STEP_REL` times the median
    change. If more changes than :data:`MAX_STEPS` (or one per 5 changes) qualify, or one has a neighbour half
    as large the same way, none is a step: regular jumps are how the series grows, and large changes in a row
    are a ramp.
    """
    n = len(values)
    limit = min(MAX_STEPS, (n - 1) // 5)
    if limit < 1:
        return []
    diffs = [b - a for a, b in zip(values, values[1:])]
    m = median(diffs)
    dev = [d - m for d in diffs]
    sd = 1.4826 * median([abs(d) for d in dev])
    threshold = max(floor, STEP_MADS * sd, STEP_REL * abs(m))
    found = [i for i, d in enumerate(dev) if abs(d) > threshold]
    # a change next to one of a like size (half to twice it, the same way) is part of a ramp: not a one-off jump
    ramp = any(
        dev[i] ** 2 / 2 < dev[k] * dev[i] < 2 * dev[i] ** 2 for i in found for k in (i - 1, i + 1) if 0 <= k < len(dev)
    )
    if len(found) > limit or ramp:
        return []
    return [(i + 1, dev[i]) for i in found]


def trend(series: Sequence[float], floor: float = 0.0, cycles: Sequence[int] | None = None) -> Trend:
    """The robust trend of ``series`` (one value per measured cycle; ``cycles`` numbers them for the report,
    0, 1, 2... by default). ``floor`` is the metric's noise floor: steps and plateaus smaller than it are noise.

    >>> t = trend([0, 1, 2, 3, 40, 41, 42, 43, 44, 45, 46, 47])  # +1 per cycle, one jump of +36
    >>> t.slope, t.shape, [(s.cycle, s.delta) for s in t.steps]
    (1.0, 'growth', [(4, 36.0)])
    """
    points = [(i, float(v)) for i, v in enumerate(series) if math.isfinite(v)]
    labels = list(cycles) if cycles is not None else list(range(len(series)))
    xs = [i for i, _ in points]
    ys = [v for _, v in points]
    n = len(ys)
    try:
        return _trend(xs, ys, floor, labels)
    except (OverflowError, ZeroDivisionError):  # values near the float maximum: no fit
        return Trend(math.nan, -math.inf, math.inf, n, math.nan, "theil-sen", 1.0, "undecided")


def _trend(xs: list[int], ys: list[float], floor: float, labels: list[int]) -> Trend:
    n = len(ys)
    cuts = [pos for pos, _ in find_steps(ys, floor)]
    keep = range(n) if n <= MAX_POINTS else sorted({round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})
    fx, fy = [xs[i] for i in keep], [ys[i] for i in keep]
    # segments between steps: only pairs within one count, so a jump moves neither the slope nor the test
    segment = [sum(1 for c in cuts if c <= i) for i in keep]
    sizes = [segment.count(b) for b in range(len(cuts) + 1)]
    if n >= ROBUST_FROM:
        s, estimator = theil_sen(fy, fx, sizes), "theil-sen"
    else:
        s, estimator = fit_slope(fy), "least-squares"
    if n >= 2 and not (math.isfinite(s.slope) and math.isfinite(s.intercept)):
        return Trend(math.nan, -math.inf, math.inf, n, math.nan, estimator, 1.0, "undecided")
    p_rise = mann_kendall(fy, sizes).p_rise if n >= 2 else 1.0
    # each segment's level on the common slope; a step is the difference between two neighbours
    levels = [median([y - s.slope * x for x, y, b in zip(fx, fy, segment) if b == k]) for k in range(len(cuts) + 1)]
    steps = [Step(cycle=labels[xs[c]], delta=levels[k + 1] - levels[k]) for k, c in enumerate(cuts)]
    adjusted = [y - (levels[sum(1 for c in cuts if c <= i)] - levels[0]) for i, y in enumerate(ys)]
    base = Trend(s.slope, s.low, s.high, n, s.intercept, estimator, p_rise, "undecided", steps)
    if n < MIN_POINTS:
        return base
    j = _plateau(adjusted, floor, p_rise)
    if j is not None:
        return replace(base, shape="bounded", plateau=median(ys[j:]), plateau_cycle=labels[xs[j]], flat_for=n - 1 - j)
    if steps and not base.rising:
        return replace(base, shape="step")
    if base.rising:
        return replace(base, shape="growth" if n >= DECIDE_AT else "undecided")
    return replace(base, shape="flat")


def _plateau(ys: list[float], floor: float, p_rise: float) -> int | None:
    """The position where the series reached the level it then kept, or None where it did not rise to one.

    A plateau: the last :func:`plateau_min` values or more stay within a tolerance of their median (one in ten
    may stray): the noise floor, or :data:`PLATEAU_SDS` robust standard deviations of the noise at that level
    (from the changes between the last values, so a trend cancels), whichever is larger. Before it, the series
    rose by more than the tolerance, a rise the Mann-Kendall test finds (over the whole series, ``p_rise``, or
    up to the plateau). And the plateau's own slope is clearly slower than the rise: the upper end of its 95%
    interval is at most :data:`PLATEAU_SLOPE_RATIO` of the rise rate.
    """
    n = len(ys)
    need = plateau_min(n)
    if n < need + 2:
        return None
    last = ys[-need:]
    level = median(last)
    diffs = [b - a for a, b in zip(last, last[1:])]  # the noise at the level, from its changes (a trend cancels)
    m = median(diffs)
    tol = max(floor, PLATEAU_SDS * 1.4826 * median([abs(d - m) for d in diffs]) / math.sqrt(2))
    j, misses = n, 0
    for k in range(n - 1, -1, -1):  # back from the end while the values keep to the level (1 in 10 may not)
        if abs(ys[k] - level) <= tol:
            j = k
        else:
            misses += 1
            if misses > max(1, (n - k) // 10):
                break
    if n - j < need or j < 1:
        return None
    head = median(ys[: min(3, j)])
    rise = level - head
    if not rise > tol or not (p_rise < ALPHA or mann_kendall(ys[: j + 1]).p_rise < ALPHA):
        return None
    tail = ys[j:] if n - j <= MAX_POINTS else ys[-MAX_POINTS:]
    if not theil_sen(tail).high <= PLATEAU_SLOPE_RATIO * rise / j:
        return None
    return j


def describe(t: Trend, unit: str) -> str | None:
    """The sentence a report shows for a shape that the slope alone would misread, or None.

    >>> t = trend([float(min(i, 50)) for i in range(1, 150)], floor=0.5, cycles=range(1, 150))
    >>> describe(t, "closures")
    'bounded: rose to 50 closures by cycle 50, flat for the last 99 cycles (e.g. a cache that filled)'
    """
    parts: list[str] = []
    if t.shape == "bounded" and t.plateau is not None:
        parts.append(
            f"bounded: rose to {_amount(t.plateau, unit)} by cycle {t.plateau_cycle}, flat for the last "
            f"{t.flat_for} cycle{'s' if t.flat_for != 1 else ''} (e.g. a cache that filled)"
        )
    if t.steps:
        what = ", ".join(f"{_amount(s.delta, unit, True)} at cycle {s.cycle}" for s in t.steps)
        lead = "one step of" if len(t.steps) == 1 else f"{len(t.steps)} steps:"
        tail = ", left out of the slope" if t.shape != "step" else ""
        parts.append(f"{lead} {what}{tail}")
    if t.shape == "undecided" and t.n >= MIN_POINTS:
        parts.append(f"still rising after {t.n} cycles: run more to tell a leak from a cache that fills")
    return "; ".join(parts) or None


def _amount(value: float, unit: str, signed: bool = False) -> str:
    text = fmt_value(value, unit, signed)
    return text if unit in ("bytes", "") else f"{text} {unit}"
