"""Leak verdicts per metric and the types that grow, from the per-cycle readings alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from closuretrace.analysis.stats import fit_slope
from closuretrace.probes import metric_def
from closuretrace.session import CycleSample, GrowingType, Verdict

#: Types whose instance count grows by less than this per cycle are not listed as growing.
TYPE_FLOOR = 0.5
TOP_TYPES = 25


def measured(cycles: Sequence[CycleSample], warmup: int) -> list[CycleSample]:
    """The cycles that count for verdicts: all but the first ``warmup`` (never fewer than what is there)."""
    return list(cycles[warmup:]) if len(cycles) > warmup else []


def verdicts(
    cycles: Sequence[CycleSample], warmup: int, floors: Mapping[str, float] | None = None
) -> list[Verdict]:
    """A verdict for every metric the cycles carry: slope per cycle, 95% CI, and leak or not.

    A leak needs both a confidence interval clear of zero and a slope above the metric's noise floor.
    """
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
        s = fit_slope(series)
        floor = float(floors.get(name, d.noise_floor))
        note = None
        if s.n < 3:
            note = f"needs at least 3 cycles after warm-up, has {s.n}"
        leak = s.n >= 3 and s.low > 0 and s.slope > floor
        out.append(
            Verdict(
                metric=name,
                unit=d.unit,
                slope_per_cycle=s.slope,
                ci_low=s.low,
                ci_high=s.high,
                n_cycles=s.n,
                noise_floor=floor,
                leak=bool(leak),
                note=note,
            )
        )
    return out


def growing_types(census: Sequence[Mapping[str, int]], warmup: int, top: int = TOP_TYPES) -> list[GrowingType]:
    """Types whose instance count rises over the measured cycles, ranked by slope (steepest first)."""
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
