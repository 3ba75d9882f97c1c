"""The pytest plugin's records as plain data: one :class:`RecordedTest` per recorded test (it travels from an
xdist worker inside ``report.user_properties``), and the :class:`RunReport` of a whole run
(``--closuretrace-report``). Built by :func:`closuretrace.checks.record_test`; rendered by
:mod:`closuretrace.renderers.pytest_report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Check statuses (``Check.status``); the first two fail the test.
BREACHED, UNMEASURED, OK, SKIPPED = "breached", "unmeasured", "ok", "skipped"
FAILING = (BREACHED, UNMEASURED)


@dataclass
class RecordedTest:
    """One recorded test, as plain data (it travels from an xdist worker inside ``report.user_properties``)."""

    nodeid: str
    #: "passed", "failed" (the test itself), "broke limits", "skipped" (xfail)
    outcome: str
    duration_s: float
    cycles: int
    warmup: int
    worker: str | None = None
    limits: dict[str, float | int] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: [{metric, label, unit, slope_per_cycle, ci_low, ci_high, n_cycles, leak}]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    closures_alive: int = 0
    closures_alive_by_factory: dict[str, int] = field(default_factory=dict)
    retention_root: str | None = None
    #: the fewest measured cycles a verdict is drawn from (set by the analysis)
    min_cycles: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecordedTest:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    # -- derived -------------------------------------------------------------------------------------------
    def verdict(self, metric: str) -> dict[str, Any] | None:
        return next((v for v in self.verdicts if v.get("metric") == metric), None)

    def slope(self, metric: str) -> float | None:
        v = self.verdict(metric)
        s = v.get("slope_per_cycle") if v else None
        judged = v is not None and v.get("state") != "too_few" and int(v.get("n_cycles", 0)) >= self.min_cycles
        return float(s) if isinstance(s, (int, float)) and judged else None

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("status") in FAILING]

    @property
    def leaks(self) -> list[str]:
        return [str(v["metric"]) for v in self.verdicts if v.get("leak")]


@dataclass
class RunReport:
    """Every recorded test of one pytest run, for ``--closuretrace-report``."""

    tests: list[RecordedTest] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0
    argv: list[str] = field(default_factory=list)
    kind: str = "pytest"
    schema_version: int = 1
    #: the fewest measured cycles a verdict is drawn from (set by the analysis)
    min_cycles: int = 3

    def ranked(self) -> list[RecordedTest]:
        """Tests that broke a limit first, then by leak verdicts, closures alive, RSS and gc object growth."""

        def key(t: RecordedTest) -> tuple[Any, ...]:
            rss, objs = t.slope("rss_bytes"), t.slope("gc_objects")
            return (
                not t.failed_checks,
                -len(t.leaks),
                -t.closures_alive,
                -(rss if rss is not None else -math.inf),
                -(objs if objs is not None else -math.inf),
                t.nodeid,
            )

        return sorted(self.tests, key=key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "argv": list(self.argv),
            "min_cycles": self.min_cycles,
            "tests": [t.to_dict() for t in self.ranked()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunReport:
        return cls(
            tests=[RecordedTest.from_dict(t) for t in d.get("tests", [])],
            started_at=str(d.get("started_at", "")),
            duration_s=float(d.get("duration_s", 0.0)),
            argv=[str(a) for a in d.get("argv", [])],
            min_cycles=int(d.get("min_cycles", 3)),
        )
