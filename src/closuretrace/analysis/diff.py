"""Two sessions side by side: did the fix work?

:func:`diff_sessions` compares a run before a change (A) with a run after it (B): the slope of every metric in
A and B with their ratio, the closures each factory made and left alive, and the types whose growth appeared
or vanished. The result is plain data; the renderers (``render_diff`` in :mod:`closuretrace.renderers.markdown`
and :mod:`closuretrace.renderers.html`) lay it out::

    >>> from closuretrace.session import load_session
    >>> d = diff_sessions(load_session("before.json"), load_session("after.json"))   # doctest: +SKIP
    >>> d.headline()                                                                    # doctest: +SKIP
    'rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from closuretrace.probes import metric_def
from closuretrace.session import GrowingType, Session, Verdict, finite
from closuretrace.units import fmt_rate, fmt_ratio

#: A's slope counts as zero (no ratio) below this fraction of the metric's noise floor.
ZERO_FRACTION_OF_FLOOR = 1e-3
#: ... and always below this absolute value (metrics with no noise floor).
ZERO_ABS = 1e-9


@dataclass
class MetricChange:
    """One metric in A and B. ``a``/``b`` are the sessions' verdicts (None where a session lacks the metric)."""

    metric: str
    label: str
    unit: str
    a: Verdict | None
    b: Verdict | None
    ratio: float | None

    @property
    def slope_a(self) -> float | None:
        return self.a.slope_per_cycle if self.a is not None else None

    @property
    def slope_b(self) -> float | None:
        return self.b.slope_per_cycle if self.b is not None else None

    @property
    def leak_a(self) -> bool:
        return self.a is not None and self.a.leak

    @property
    def leak_b(self) -> bool:
        return self.b is not None and self.b.leak

    @property
    def change(self) -> str:
        """``fixed``, ``still leaking``, ``new leak`` or ``""`` (no leak in either)."""
        if self.leak_a and self.leak_b:
            return "still leaking"
        if self.leak_a:
            return "fixed" if self.b is not None else "not measured in B"
        if self.leak_b:
            return "new leak"
        return ""

    def summary(self) -> str:
        """``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``."""
        text = f"{self.metric}: {fmt_rate(self.slope_a, self.unit)} -> {fmt_rate(self.slope_b, self.unit)}"
        ratio = fmt_ratio(self.ratio)
        return f"{text} ({ratio})" if ratio else text


@dataclass
class FactoryChange:
    """Closures one factory created, and left alive at the end, in A and in B."""

    factory: str
    created_a: int
    alive_a: int
    created_b: int
    alive_b: int


@dataclass
class SessionDiff:
    """What changed from session ``a`` (before) to session ``b`` (after)."""

    a: Session
    b: Session
    name_a: str = "A"
    name_b: str = "B"
    metrics: list[MetricChange] = field(default_factory=list)
    factories: list[FactoryChange] = field(default_factory=list)
    #: growing in B, not in A (B's readings)
    types_appeared: list[GrowingType] = field(default_factory=list)
    #: growing in A, not in B (A's readings)
    types_vanished: list[GrowingType] = field(default_factory=list)

    def fixed(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.change == "fixed"]

    def still_leaking(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.change == "still leaking"]

    def new_leaks(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.change == "new leak"]

    def key_metric(self) -> MetricChange | None:
        """The metric the headline is about: the first that leaks in A, else in B, else RSS, else the first."""
        for pick in (
            lambda m: m.leak_a,
            lambda m: m.leak_b,
            lambda m: m.metric == "rss_bytes",
            lambda m: True,
        ):
            for m in self.metrics:
                if pick(m):
                    return m
        return None

    def headline(self) -> str:
        """One line, e.g. ``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``."""
        key = self.key_metric()
        return key.summary() if key is not None else "no metric measured in either session"

    def status(self) -> str:
        """``fixed``, ``still leaking``, ``new leak`` or ``no leak`` (the worst of them wins)."""
        if self.still_leaking():
            return "still leaking"
        if self.new_leaks():
            return "new leak"
        if self.fixed():
            return "fixed"
        return "no leak"

    def conclusion(self) -> str:
        """One or two sentences: which leaks of A are gone in B, which remain, which are new."""

        def names(ms: list[MetricChange]) -> str:
            return ", ".join(m.metric for m in ms)

        parts: list[str] = []
        fixed, still, new = self.fixed(), self.still_leaking(), self.new_leaks()
        if still:
            parts.append(f"Still leaking in {self.name_b}: {names(still)}.")
        if new:
            parts.append(f"New leak in {self.name_b}: {names(new)} (no leak in {self.name_a}).")
        if fixed:
            verb = "does" if len(fixed) == 1 else "do"
            parts.append(f"Fixed: {names(fixed)} leaked in {self.name_a} and {verb} not leak in {self.name_b}.")
        if not parts:
            parts.append(f"No leak in either run ({self.name_a}, {self.name_b}).")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the two sessions themselves are not repeated; NaN/inf become null)."""

        def verdict(v: Verdict | None) -> dict[str, Any] | None:
            if v is None:
                return None
            return {
                "slope_per_cycle": v.slope_per_cycle,
                "ci_low": v.ci_low,
                "ci_high": v.ci_high,
                "n_cycles": v.n_cycles,
                "leak": v.leak,
            }

        def growing(g: GrowingType) -> dict[str, Any]:
            return {"type": g.type, "slope_per_cycle": g.slope_per_cycle, "counts": list(g.counts)}

        d: dict[str, Any] = {
            "kind": "diff",
            "a": {"name": self.name_a, "argv": list(self.a.run.argv), "cycles": len(self.a.cycles)},
            "b": {"name": self.name_b, "argv": list(self.b.run.argv), "cycles": len(self.b.cycles)},
            "headline": self.headline(),
            "status": self.status(),
            "conclusion": self.conclusion(),
            "metrics": [
                {
                    "metric": m.metric,
                    "unit": m.unit,
                    "a": verdict(m.a),
                    "b": verdict(m.b),
                    "ratio": m.ratio,
                    "change": m.change,
                }
                for m in self.metrics
            ],
            "factories": [vars(f).copy() for f in self.factories],
            "types_appeared": [growing(g) for g in self.types_appeared],
            "types_vanished": [growing(g) for g in self.types_vanished],
        }
        out: dict[str, Any] = finite(d)
        return out


def slope_ratio(a: Verdict | None, b: Verdict | None) -> float | None:
    """B's slope over A's; None when either is missing or not finite, or A's slope is about zero."""
    if a is None or b is None:
        return None
    sa, sb = a.slope_per_cycle, b.slope_per_cycle
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return None
    floor = a.noise_floor if math.isfinite(a.noise_floor) else 0.0
    if abs(sa) <= max(ZERO_ABS, ZERO_FRACTION_OF_FLOOR * abs(floor)):
        return None
    return sb / sa


def diff_sessions(a: Session, b: Session, name_a: str = "A", name_b: str = "B") -> SessionDiff:
    """Compare session ``a`` (before) with ``b`` (after); see :class:`SessionDiff`."""
    va = {v.metric: v for v in a.verdicts}
    vb = {v.metric: v for v in b.verdicts}
    order = list(va) + [m for m in vb if m not in va]
    metrics: list[MetricChange] = []
    for name in order:
        infos = [m for m in (*a.metrics, *b.metrics) if m.name == name]
        info = infos[0] if infos else metric_def(name).info()
        ref = va.get(name) or vb[name]
        metrics.append(
            MetricChange(
                metric=name,
                label=info.label or name,
                unit=ref.unit or info.unit,
                a=va.get(name),
                b=vb.get(name),
                ratio=slope_ratio(va.get(name), vb.get(name)),
            )
        )

    fa, fb = a.factories(), b.factories()
    factories = [
        FactoryChange(
            factory=f,
            created_a=len(fa.get(f, [])),
            alive_a=sum(1 for r in fa.get(f, []) if r.alive_at_end),
            created_b=len(fb.get(f, [])),
            alive_b=sum(1 for r in fb.get(f, []) if r.alive_at_end),
        )
        for f in list(fa) + [f for f in fb if f not in fa]
    ]
    factories.sort(key=lambda f: (-max(f.alive_a, f.alive_b), -max(f.created_a, f.created_b), f.factory))

    ta = {g.type for g in a.growing_types}
    tb = {g.type for g in b.growing_types}
    return SessionDiff(
        a=a,
        b=b,
        name_a=name_a,
        name_b=name_b,
        metrics=metrics,
        factories=factories,
        types_appeared=[g for g in b.growing_types if g.type not in ta],
        types_vanished=[g for g in a.growing_types if g.type not in tb],
    )
