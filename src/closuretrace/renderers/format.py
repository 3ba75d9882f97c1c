"""Number formatting shared by every renderer, so the terminal, Markdown and HTML say the same thing."""

from __future__ import annotations

import math

from closuretrace.session import ClosureRecord, Session, Verdict
from closuretrace.units import fmt_bytes, fmt_value

__all__ = ["fmt_bytes", "fmt_value"]


def fmt_ci(v: Verdict) -> str:
    if not (math.isfinite(v.ci_low) and math.isfinite(v.ci_high)):
        return "n/a"
    return f"[{fmt_value(v.ci_low, v.unit, True)}, {fmt_value(v.ci_high, v.unit, True)}]"


#: How each verdict state (decided by the analysis) reads in a report.
STATE_WORD: dict[str, str] = {
    "leak": "LEAK",
    "grows": "grows (below noise floor)",
    "flat": "flat",
    "too_few": "too few cycles",
}
#: The CSS class / colour key of each verdict state.
STATE_CLASS: dict[str, str] = {"leak": "leak", "grows": "grows", "flat": "flat", "too_few": "few"}
#: The word that opens a report's conclusion, per session status (decided by the analysis).
STATUS_WORD: dict[str, str] = {"leak": "LEAK", "flat": "No leak", "inconclusive": "Inconclusive"}


#: Shapes that say more than the state, shown in its place when the series is not a leak.
SHAPE_WORD: dict[str, str] = {"bounded": "bounded (rose, then stopped)", "step": "one-off step"}


def verdict_word(v: Verdict) -> str:
    """The verdict's state as a report shows it (``"not judged"`` for a verdict the analysis never saw); a
    series the analysis found bounded or a single step says so instead of "grows" or "flat"."""
    if v.state not in ("leak", "too_few") and v.shape in SHAPE_WORD:
        return SHAPE_WORD[v.shape]
    return STATE_WORD.get(v.state, "not judged")


def verdict_class(v: Verdict | None) -> str:
    """The CSS class of the verdict's state (``"few"`` when there is none)."""
    return STATE_CLASS.get(v.state, "few") if v is not None else "few"


def status_word(session: Session) -> str:
    """``LEAK``, ``No leak`` or ``Inconclusive``; ``Not analysed`` for a session no analysis has judged."""
    return STATUS_WORD.get(session.status, "Not analysed")


def conclusion(session: Session) -> str:
    """The one-line answer, e.g. ``LEAK: RSS +4.6 MiB/cycle (over 7 cycles after 1 warm-up).``; plain text."""
    return f"{status_word(session)}: {session.finding}" if session.finding else status_word(session)


def fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def short_type(name: str) -> str:
    """``tensorflow.python.framework.func_graph.FuncGraph`` -> ``FuncGraph``."""
    return name.rsplit(".", 1)[-1]


def factory_rows(session: Session) -> list[dict[str, object]]:
    """One row per factory: created, freed, alive at end, id reuses, largest capture."""
    rows: list[dict[str, object]] = []
    for factory, recs in session.factories().items():
        largest = max(
            (r.largest_capture for r in recs if r.largest_capture is not None),
            key=lambda c: c.nbytes or 0,
            default=None,
        )
        rows.append(
            {
                "factory": factory,
                "kind": _kinds(recs),
                "created": len(recs),
                "freed": sum(1 for r in recs if r.collected_cycle is not None),
                "alive": sum(1 for r in recs if r.alive_at_end),
                "ids_reused": sum(1 for r in recs if r.reused_id_of is not None),
                "largest": (
                    f"{largest.name}: {largest.type} ({fmt_bytes(largest.nbytes or 0)})" if largest else ""
                ),
                "sources": ", ".join(sorted({r.source for r in recs})),
            }
        )
    rows.sort(key=lambda r: (-int(str(r["alive"])), -int(str(r["created"])), str(r["factory"])))
    return rows


def _kinds(recs: list[ClosureRecord]) -> str:
    return ", ".join(sorted({r.kind for r in recs}))


def headline(session: Session) -> str:
    run = session.run
    target = " ".join(run.argv) if run.argv else "(no argv)"
    tail = {
        "completed": "completed",
        "exit": f"sys.exit({run.exit_code})",
        "exception": "raised an exception, exit 1",
        "interrupted": f"interrupted, exit {run.exit_code}",
        "terminated": f"terminated by SIGTERM, exit {run.exit_code}",
    }.get(run.outcome, f"{run.outcome}, exit {run.exit_code}")
    took = fmt_seconds(run.duration_s)
    return f"closuretrace {session.kind} of {target} ({tail}, {took}, {len(session.cycles)} cycles)"
