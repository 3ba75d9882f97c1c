"""Least-squares slope per cycle with a Student-t confidence interval (no SciPy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
