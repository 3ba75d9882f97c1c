"""Slopes per cycle and trend tests, in pure Python (no SciPy, no NumPy).

* :func:`fit_slope`: least squares with a Student-t interval (the charts' dashed line, the few-cycle fallback).
* :func:`theil_sen`: the median of the pairwise slopes with Sen's rank-based interval (the verdicts' estimator).
* :func:`mann_kendall`: Kendall's S of the values against their order, with its one-sided p-value for a rise:
  exact (the permutation distribution, ties included) up to :data:`EXACT_MAX` points, the normal approximation
  with the tie correction beyond.

See ``docs/statistics.md`` for why these and how well their intervals cover the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Two-sided 95% quantiles t_{0.975, df} for df = 1..30; beyond, the Cornish-Fisher expansion below is exact
# to 3 decimals.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (``df >= 1``)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Slope:
    """Fitted growth per step: ``slope`` with its 95% interval ``[low, high]`` over ``n`` points."""

    slope: float
    low: float
    high: float
    n: int
    intercept: float


def fit_slope(values: Sequence[float]) -> Slope:
    """Fit ``values[i] = a + b*i`` by least squares and return ``b`` with its 95% confidence interval.

    With fewer than three points there is no residual variance to estimate, so the interval is infinite
    (``-inf, +inf``): no verdict can be drawn from it.

    >>> s = fit_slope([10, 12, 14, 16])
    >>> s.slope, s.low, s.high
    (2.0, 2.0, 2.0)
    """
    try:
        return _fit(values)
    except OverflowError:  # values near the float maximum (a hand-edited or fuzzed session): no fit
        return Slope(math.nan, -math.inf, math.inf, len(values), math.nan)


def _fit(values: Sequence[float]) -> Slope:
    n = len(values)
    if n == 0:
        return Slope(math.nan, -math.inf, math.inf, 0, math.nan)
    if n == 1:
        return Slope(math.nan, -math.inf, math.inf, 1, float(values[0]))
    xs = range(n)
    mx = (n - 1) / 2
    my = math.fsum(values) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, values))
    b = sxy / sxx
    a = my - b * mx
    if n == 2:
        return Slope(b, -math.inf, math.inf, 2, a)
    sse = math.fsum((y - (a + b * x)) ** 2 for x, y in zip(xs, values))
    se = math.sqrt(sse / (n - 2) / sxx)
    half = t_quantile_975(n - 2) * se
    return Slope(b, b - half, b + half, n, a)


# -- rank statistics -------------------------------------------------------------------------------------------

#: Up to this many points the Mann-Kendall p-value and Sen's interval use the exact permutation distribution.
EXACT_MAX = 40
#: Pairwise slopes grow as n²/2: above this many points, this many evenly spaced ones are used (125k pairs).
MAX_POINTS = 500


@dataclass(frozen=True)
class MannKendall:
    """Kendall's ``s`` (rises minus falls over all pairs), and ``p_rise``: P(S >= s) with no trend."""

    s: int
    n: int
    p_rise: float
    exact: bool


def mann_kendall(values: Sequence[float]) -> MannKendall:
    """The Mann-Kendall test for a rise: ``s`` sums the sign of every later-minus-earlier pair.

    ``p_rise`` is exact for ``n <= EXACT_MAX`` (every arrangement of the values equally likely, ties kept); above,
    the normal approximation with the tie-corrected variance and a continuity correction.

    >>> t = mann_kendall([1, 2, 3, 4, 5])
    >>> t.s, round(t.p_rise, 4)  # only 1 of the 120 orders rises every time
    (10, 0.0083)
    """
    n = len(values)
    s = 0
    for i in range(n - 1):
        yi = values[i]
        for yj in values[i + 1 :]:
            s += (yj > yi) - (yj < yi)
    groups = tuple(sorted(_tie_groups(values)))
    if n < 2:
        return MannKendall(s, n, 1.0, True)
    if n <= EXACT_MAX:
        counts = _inversions(groups)
        untied = n * (n - 1) // 2 - sum(t * (t - 1) // 2 for t in groups)
        # S = untied - 2 * inversions, so S >= s  <=>  inversions <= (untied - s) / 2
        k = (untied - s) // 2
        p = sum(counts[: k + 1]) / sum(counts) if k >= 0 else 0.0
        return MannKendall(s, n, min(1.0, p), True)
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in groups)) / 18
    if var <= 0:
        return MannKendall(s, n, 1.0, False)
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return MannKendall(s, n, 0.5 * math.erfc(z / math.sqrt(2)), False)


def theil_sen(values: Sequence[float], xs: Sequence[float] | None = None) -> Slope:
    """The Theil-Sen slope (median of all pairwise slopes) with Sen's 95% interval (order statistics of the
    pairwise slopes chosen by Kendall's distribution; exact up to :data:`EXACT_MAX` points).

    The interval is infinite where no 95% rank interval exists (fewer than 5 points). One point can move the
    median slope by at most one rank: about 29% of the points must be wrong to carry it anywhere (its breakdown
    point), against a single point for least squares.

    >>> s = theil_sen([0, 1, 2, 30, 4, 5, 6])  # one outlier: least squares: 1.0 [-4.4, +6.4]
    >>> s.slope, s.low, s.high
    (1.0, 1.0, 1.0)
    """
    n = len(values)
    xv = list(range(n)) if xs is None else list(xs)
    slopes = sorted(
        (values[j] - values[i]) / (xv[j] - xv[i]) for i in range(n - 1) for j in range(i + 1, n) if xv[j] != xv[i]
    )
    if not slopes:
        return Slope(math.nan, -math.inf, math.inf, n, float(values[0]) if n else math.nan)
    if any(not math.isfinite(v) for v in (slopes[0], slopes[-1])):
        return Slope(math.nan, -math.inf, math.inf, n, math.nan)
    b = _median(slopes)
    a = _median([y - b * x for x, y in zip(xv, values)])
    k = sen_rank(n)
    if k is None or k >= len(slopes) - 1 - k:
        return Slope(b, -math.inf, math.inf, n, a)
    return Slope(b, slopes[k], slopes[len(slopes) - 1 - k], n, a)


def sen_rank(n: int, alpha: float = 0.05) -> int | None:
    """The 0-based rank ``k`` of the lower bound among the sorted pairwise slopes: the interval is
    ``[slopes[k], slopes[N-1-k]]``. ``None`` where no interval at level ``1 - alpha`` exists (n < 5 at 95%).

    The true slope lies below ``slopes[k]`` exactly when Kendall's S of the detrended values is at least
    ``N - 2k``; ``k`` is the largest rank with that chance at most ``alpha / 2``.
    """
    if n < 2:
        return None
    big_n = n * (n - 1) // 2
    if n <= EXACT_MAX:
        counts = _inversions((1,) * n)
        limit = alpha / 2 * math.factorial(n)
        total, k = 0, -1
        for c in counts:
            total += c
            if total > limit:
                break
            k += 1
        return k if k >= 0 else None
    sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    k = math.floor((big_n - 1 - _z(1 - alpha / 2) * sd) / 2)
    return k if k >= 0 else None


def _z(p: float) -> float:
    """The standard normal quantile (bisection on erfc; only needed for the normal approximation)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _median(xs: Sequence[float]) -> float:
    """The median of ``xs`` (sorted or not)."""
    v = sorted(xs)
    m = len(v) // 2
    return float(v[m]) if len(v) % 2 else (v[m - 1] + v[m]) / 2


def median(xs: Sequence[float]) -> float:
    """The median of ``xs`` (NaN when empty)."""
    return _median(xs) if xs else math.nan


def _tie_groups(values: Sequence[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return list(counts.values())


@lru_cache(maxsize=256)
def _inversions(groups: tuple[int, ...]) -> tuple[int, ...]:
    """How many arrangements of a multiset with tie groups of sizes ``groups`` have 0, 1, 2... inversions: the
    coefficients of the q-multinomial ``[n]! / prod [m]!`` (MacMahon), in exact integers."""
    poly = [1]
    for k in range(2, sum(groups) + 1):
        poly = _times_run(poly, k)
    for m in groups:
        for k in range(2, m + 1):
            poly = _over_run(poly, k)
    return tuple(poly)


def _times_run(p: list[int], k: int) -> list[int]:
    """``p * (1 + q + ... + q^(k-1))``."""
    out = [0] * (len(p) + k - 1)
    run = 0
    for i in range(len(out)):
        if i < len(p):
            run += p[i]
        if i >= k:
            run -= p[i - k]
        out[i] = run
    return out


def _over_run(p: list[int], k: int) -> list[int]:
    """``p / (1 + q + ... + q^(k-1))``, exact: ``out * (1 - q^k) = p * (1 - q)``."""
    c = [p[i] - (p[i - 1] if i else 0) for i in range(len(p))]
    out = [0] * (len(p) - k + 1)
    for i in range(len(out)):
        out[i] = c[i] + (out[i - k] if i >= k else 0)
    return out
