"""Pairwise comparison of measured runs: is the growth of A different from B's, beyond the noise?

Two runs (scenarios) that differ in one factor form a :class:`Pair`. :func:`compare_pair` pools pairs into one
:class:`~closuretrace.session.Comparison`: the difference of the per-cycle slopes gets a 95% interval from the two
runs' own intervals (half widths added in quadrature; pairs pooled by averaging). A factor **moves** a metric
when that interval is clear of zero *and* the difference exceeds the metric's noise floor (the same floor the
leak verdicts use), and the difference of the **median per-cycle steps** agrees: resident memory sometimes
jumps once (the allocator takes a new arena), and one jump tilts a least-squares slope over a few cycles but not
a median step. Nothing here knows which factor is expected to matter; the experiment
(:mod:`closuretrace.experiment.conclusion`) says which runs form pairs and words the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from closuretrace.probes import metric_def
from closuretrace.session import Comparison, ScenarioResult
from closuretrace.session.compare import Factor

__all__ = ["RSS", "Pair", "compare_pair", "median", "pair_slope", "ranking"]

RSS = "rss_bytes"


@dataclass
class Pair:
    """Two scenarios that differ in one factor only, ``a`` minus ``b``, under ``setting``."""

    a: ScenarioResult
    b: ScenarioResult
    setting: str


def pair_slope(s: ScenarioResult, metric: str) -> tuple[float, float, float] | None:
    """(least-squares slope, half width of its 95% interval, median per-cycle step) of ``metric`` in ``s``;
    None if the metric is missing or its slope has no finite interval (fewer than 3 measured cycles)."""
    v = s.verdict(metric)
    if v is None or not (math.isfinite(v.slope_per_cycle) and math.isfinite(v.ci_low) and math.isfinite(v.ci_high)):
        return None
    series = s.series(metric)
    used = series[s.warmup:] if len(series) > s.warmup else series
    steps = [b - a for a, b in zip(used, used[1:])]
    step = median(steps) if steps else v.slope_per_cycle
    return v.slope_per_cycle, max(0.0, (v.ci_high - v.ci_low) / 2), step


def compare_pair(factor: Factor, metric: str, a: str, b: str, setting: str, pairs: Sequence[Pair]) -> Comparison | None:
    """Pool ``pairs`` (A minus B) into one :class:`Comparison`; None when no pair has both slopes."""
    diffs: list[float] = []
    step_diffs: list[float] = []
    halves: list[float] = []
    a_sl: list[float] = []
    b_sl: list[float] = []
    unit = ""
    for p in pairs:
        sa, sb = pair_slope(p.a, metric), pair_slope(p.b, metric)
        if sa is None or sb is None:
            continue
        va = p.a.verdict(metric)
        unit = va.unit if va is not None else unit
        a_sl.append(sa[0])
        b_sl.append(sb[0])
        diffs.append(sa[0] - sb[0])
        halves.append(math.hypot(sa[1], sb[1]))
        step_diffs.append(sa[2] - sb[2])
    if not diffs:
        return None
    n = len(diffs)
    diff = math.fsum(diffs) / n
    step_diff = math.fsum(step_diffs) / n
    half = math.sqrt(math.fsum(h * h for h in halves)) / n
    floor = metric_def(metric).noise_floor
    bar = max(half, floor)
    moves = abs(diff) > bar and abs(step_diff) > bar and (diff > 0) == (step_diff > 0)
    return Comparison(
        factor=factor,
        metric=metric,
        unit=unit or metric_def(metric).unit,
        a=a,
        b=b,
        setting=setting,
        a_slope=math.fsum(a_sl) / n,
        b_slope=math.fsum(b_sl) / n,
        difference=diff,
        half_width=half,
        floor=floor,
        pairs=n,
        moves=bool(moves),
        step_difference=step_diff,
    )


def ranking(scenarios: Sequence[ScenarioResult]) -> list[ScenarioResult]:
    """Scenarios by RSS growth per cycle, steepest first; failed or unfitted ones last."""

    def key(s: ScenarioResult) -> tuple[int, float, str]:
        sl = pair_slope(s, RSS)
        return (0 if s.ok and sl is not None else 1, -(sl[0] if sl else 0.0), s.name)

    return sorted(scenarios, key=key)


def median(xs: Sequence[float]) -> float:
    """The median of ``xs`` (not empty)."""
    s = sorted(xs)
    k = len(s)
    mid = k // 2
    return float(s[mid]) if k % 2 else (s[mid - 1] + s[mid]) / 2
