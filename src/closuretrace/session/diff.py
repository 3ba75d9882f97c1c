"""Two sessions side by side, as plain data: what :func:`closuretrace.analysis.diff.diff_sessions` decided.

Every judgement (each metric's :data:`Change`, the diff's status, headline and conclusion) is made once, by the
analysis, and stored here; the renderers only lay it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from closuretrace.session.codec import finite
from closuretrace.session.model import GrowingType, Session, Verdict

#: What happened to one metric's leak from A to B (``""``: no leak in either).
Change = Literal["fixed", "still leaking", "new leak", "not measured in B", ""]
#: The diff's status: the worst change wins.
DiffStatus = Literal["still leaking", "new leak", "fixed", "no leak"]


@dataclass
class MetricChange:
    """One metric in A and B. ``a``/``b`` are the sessions' verdicts (None where a session lacks the metric)."""

    metric: str
    label: str
    unit: str
    a: Verdict | None
    b: Verdict | None
    #: B's slope over A's (None when A's is about zero or either is missing)
    ratio: float | None
    change: Change = ""
    #: ``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``
    summary: str = ""

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
    status: DiffStatus = "no leak"
    #: one line about the key metric, e.g. ``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``
    headline: str = ""
    #: one or two sentences: which leaks of A are gone in B, which remain, which are new
    conclusion: str = ""

    def with_change(self, change: Change) -> list[MetricChange]:
        """The metrics whose change is ``change``, in order."""
        return [m for m in self.metrics if m.change == change]

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
            "headline": self.headline,
            "status": self.status,
            "conclusion": self.conclusion,
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
