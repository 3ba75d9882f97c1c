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


def mann_kendall(values: Sequence[float], blocks: Sequence[int] | None = None) -> MannKendall:
    """The Mann-Kendall test for a rise: ``s`` sums the sign of every later-minus-earlier pair.

    ``blocks`` splits the values into consecutive segments (sizes summing to ``len(values)``; one segment by
    default) and only pairs within a segment count, as in the seasonal Kendall test: the segments between two
    one-off steps. ``p_rise`` is exact for ``n <= EXACT_MAX`` (every arrangement of each segment's values equally
    likely, ties kept); above, the normal approximation with the tie-corrected variance and a continuity
    correction.

    >>> t = mann_kendall([1, 2, 3, 4, 5])
    >>> t.s, round(t.p_rise, 4)  # only 1 of the 120 orders rises every time
    (10, 0.0083)
    """
    n = len(values)
    sizes = _sizes(n, blocks)
    s = sum(_kendall_s(part) for part in _split(values, sizes))
    if n < 2:
        return MannKendall(s, n, 1.0, True)
    ties = [tuple(sorted(_tie_groups(part))) for part in _split(values, sizes)]
    if n <= EXACT_MAX:
        counts = _convolve([_inversions(t) for t in ties])
        untied = sum(_pairs(m) - sum(_pairs(t) for t in g) for m, g in zip(sizes, ties))
        # S = untied - 2 * inversions, so S >= s  <=>  inversions <= (untied - s) / 2
        k = (untied - s) // 2
        p = sum(counts[: k + 1]) / sum(counts) if k >= 0 else 0.0
        return MannKendall(s, n, min(1.0, p), True)
    var = sum(_var_s(m, g) for m, g in zip(sizes, ties))
    if var <= 0:
        return MannKendall(s, n, 1.0, False)
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return MannKendall(s, n, 0.5 * math.erfc(z / math.sqrt(2)), False)


def theil_sen(values: Sequence[float], xs: Sequence[float] | None = None, blocks: Sequence[int] | None = None) -> Slope:
    """The Theil-Sen slope (median of all pairwise slopes) with Sen's 95% interval (order statistics of the
    pairwise slopes chosen by Kendall's distribution; exact up to :data:`EXACT_MAX` points).

    With ``blocks`` (see :func:`mann_kendall`) only pairs within a segment count: one slope shared by segments
    whose levels differ, the segments between one-off steps. ``intercept`` is the first segment's. The interval
    is infinite where no 95% rank interval exists (fewer than 5 points). One point moves the median slope by at
    most one rank: about 29% of the points must be wrong to carry it anywhere (its breakdown point), against a
    single point for least squares.

    >>> s = theil_sen([0, 1, 2, 30, 4, 5, 6])  # one outlier: least squares: 1.0 [-4.4, +6.4]
    >>> s.slope, s.low, s.high
    (1.0, 1.0, 1.0)
    """
    n = len(values)
    sizes = _sizes(n, blocks)
    xv = [float(x) for x in (range(n) if xs is None else xs)]
    slopes: list[float] = []
    for px, py in zip(_split(xv, sizes), _split(values, sizes)):
        m = len(py)
        pairs = ((i, j) for i in range(m - 1) for j in range(i + 1, m) if px[j] != px[i])
        slopes.extend((py[j] - py[i]) / (px[j] - px[i]) for i, j in pairs)
    slopes.sort()
    first = sizes[0] if sizes else 0
    if not slopes or not (math.isfinite(slopes[0]) and math.isfinite(slopes[-1])):
        return Slope(math.nan, -math.inf, math.inf, n, float(values[0]) if n == 1 else math.nan)
    b = _median(slopes)
    a = _median([y - b * x for x, y in zip(xv[:first], values[:first])])
    k = sen_rank(sizes)
    if k is None or k >= len(slopes) - 1 - k:
        return Slope(b, -math.inf, math.inf, n, a)
    return Slope(b, slopes[k], slopes[len(slopes) - 1 - k], n, a)


def sen_rank(n: int | Sequence[int], alpha: float = 0.05) -> int | None:
    """The 0-based rank ``k`` of the lower bound among the sorted pairwise slopes: the interval is
    ``[slopes[k], slopes[N-1-k]]``. ``n`` is the number of points, or the sizes of the segments. ``None`` where no
    interval at level ``1 - alpha`` exists (fewer than 5 points at 95%).

    The true slope lies below ``slopes[k]`` exactly when Kendall's S of the detrended values is at least
    ``N - 2k`` (no ties); ``k`` is the largest rank with that chance at most ``alpha / 2``.
    """
    sizes = [n] if isinstance(n, int) else list(n)
    total_n = sum(sizes)
    big_n = sum(_pairs(m) for m in sizes)
    if big_n < 1:
        return None
    if total_n <= EXACT_MAX:
        counts = _convolve([_inversions((1,) * m) for m in sizes])
        limit = alpha / 2 * sum(counts)
        total, k = 0, -1
        for c in counts:
            total += c
            if total > limit:
                break
            k += 1
        return k if k >= 0 else None
    sd = math.sqrt(sum(_var_s(m, ()) for m in sizes))
    k = math.floor((big_n - 1 - _z(1 - alpha / 2) * sd) / 2)
    return k if k >= 0 else None


def _pairs(m: int) -> int:
    return m * (m - 1) // 2


def _var_s(m: int, ties: Sequence[int]) -> float:
    """The variance of Kendall's S over ``m`` points with tie groups ``ties`` and no trend."""
    return (m * (m - 1) * (2 * m + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18


def _kendall_s(values: Sequence[float]) -> int:
    s = 0
    for i in range(len(values) - 1):
        yi = values[i]
        for yj in values[i + 1 :]:
            s += (yj > yi) - (yj < yi)
    return s


def _sizes(n: int, blocks: Sequence[int] | None) -> list[int]:
    if blocks is None:
        return [n] if n else []
    sizes = [b for b in blocks if b > 0]
    if sum(sizes) != n:
        raise ValueError(f"blocks {list(blocks)} do not add up to {n} values")
    return sizes


def _split(values: Sequence[float], sizes: Sequence[int]) -> list[Sequence[float]]:
    out: list[Sequence[float]] = []
    start = 0
    for m in sizes:
        out.append(values[start : start + m])
        start += m
    return out


def _convolve(polys: Sequence[Sequence[int]]) -> list[int]:
    """The product of polynomials (the distribution of a sum of independent counts)."""
    out = [1]
    for p in polys:
        if len(p) == 1:
            out = [c * p[0] for c in out]
            continue
        prod = [0] * (len(out) + len(p) - 1)
        for i, a in enumerate(out):
            if a:
                for j, b in enumerate(p):
                    prod[i + j] += a * b
        out = prod
    return out


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
