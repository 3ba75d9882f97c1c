"""One self-contained HTML page per session (or per diff): verdicts first, then charts, chains and tables.

The page works offline: CSS inline, charts as inline SVG (:mod:`closuretrace.renderers.charts`), no script
runs and nothing is fetched. The templates (``templates/*.j2``) are rendered with autoescaping on, so every
string the profiled program controls (reprs, names, argv, error text) stays text; the only markup passed
through unescaped is the SVG matplotlib wrote. The session itself is embedded as
``<script type="application/json" id="session">`` (escaped by ``tojson``) so the page carries its data.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from closuretrace._version import __version__
from closuretrace.renderers import charts
from closuretrace.renderers.format import (
    factory_rows,
    fmt_bytes,
    fmt_ci,
    fmt_seconds,
    fmt_value,
    headline,
    short_type,
    status_word,
    verdict_class,
    verdict_word,
)
from closuretrace.renderers.holder_text import holder_sentence, verification_lines
from closuretrace.session import ClosureRecord, CompareSession, Session, Verdict
from closuretrace.session.diff import SessionDiff
from closuretrace.units import fmt_rate, fmt_ratio

#: Closure rows in the lifetime table; the rest are counted in one line.
MAX_CLOSURE_ROWS = 200
#: Longest repr shown in a table cell (the full text is in the embedded JSON).
MAX_REPR = 160
#: Most columns on the closure lifetime axis; a longer session puts several cycles in one column.
MAX_LIFETIME_COLUMNS = 10_000



@functools.lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("closuretrace.renderers", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _clip(text: str, limit: int = MAX_REPR) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict_view(session: Session, v: Verdict) -> dict[str, Any]:
    info = session.metric_info(v.metric)
    word = verdict_word(v)
    return {
        "metric": v.metric,
        "label": info.label or v.metric,
        "covers": info.covers,
        "slope": fmt_value(v.slope_per_cycle, v.unit, True),
        "rate": fmt_rate(v.slope_per_cycle, v.unit),
        "ci": fmt_ci(v),
        "word": word,
        "cls": verdict_class(v),
        "n": v.n_cycles,
        "floor": fmt_value(v.noise_floor, v.unit),
        "note": v.note or "",
    }


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _lifetime_rows(session: Session) -> dict[str, Any]:
    cycles = session.cycles
    first = cycles[0].index if cycles else 0
    recs = session.closures
    # A cycle outside the session's (a hand-edited or damaged file) is drawn at the nearest edge of the strip:
    # offset 0 is the first cycle, len(cycles) the one that was running when the session ended.
    n = max(len(cycles), 1 + max((_clamp(r.created_cycle - first, 0, len(cycles)) for r in recs), default=0))
    warmup = session.warmup
    shown = recs
    if len(recs) > MAX_CLOSURE_ROWS:
        # Keep the closures still alive at the end first: they are the ones a leak is made of.
        shown = sorted(recs, key=lambda r: (not r.alive_at_end, r.serial))[:MAX_CLOSURE_ROWS]
        shown.sort(key=lambda r: r.serial)
    rows = [_lifetime_row(r, first, n) for r in shown]
    # One axis column per cycle, up to MAX_LIFETIME_COLUMNS; beyond that each column stands for ``per`` cycles.
    per = max(1, math.ceil(n / MAX_LIFETIME_COLUMNS))
    ticks = list(range(first, first + n, per))
    step = max(1, math.ceil(len(ticks) / 12))
    return {
        "rows": rows,
        "more": len(recs) - len(shown),
        "alive_more": sum(1 for r in recs if r.alive_at_end) - sum(1 for r in shown if r.alive_at_end),
        "n": len(ticks),
        "warmup_pct": f"{100 * min(warmup, n) / n:.3f}",
        "ticks": [
            {"label": str(t) if i % step == 0 else "", "warm": t - first < warmup} for i, t in enumerate(ticks)
        ],
        "total": len(recs),
    }


def _lifetime_row(r: ClosureRecord, first: int, n: int) -> dict[str, Any]:
    start = _clamp(r.created_cycle - first, 0, n)
    if not r.weakrefable:
        end, cls, life = float(n), "unknown", "not weak-referenceable: collection not seen"
    elif r.collected_cycle is None:
        end, cls, life = float(n), "alive", "alive at end"
    else:
        end, cls = max(float(_clamp(r.collected_cycle - first, 0, n)), start + 0.5), "freed"
        life = f"freed in cycle {r.collected_cycle}"
    end = min(max(end, start), n)
    largest = r.largest_capture
    captures = [f"{c.name}: {c.type}" + (f" ({fmt_bytes(c.nbytes)})" if c.nbytes is not None else "")
                for c in r.captures]
    return {
        "serial": r.serial,
        "factory": r.factory,
        "qualname": r.qualname,
        "module": r.module,
        "kind": r.kind,
        "source": r.source,
        "created": r.created_cycle,
        "life": life,
        "cls": cls,
        "left": f"{100 * start / n:.3f}",
        "width": f"{100 * (end - start) / n:.3f}",
        "reused": r.reused_id_of,
        "id": f"0x{r.id:x}",
        "captures": captures,
        "largest": (
            f"{largest.name}: {largest.type} ({fmt_bytes(largest.nbytes or 0)})" if largest is not None else ""
        ),
        "largest_repr": _clip(largest.repr) if largest is not None else "",
        "roles": ", ".join(r.roles),
    }


def _details(session: Session) -> list[tuple[str, str]]:
    run = session.run
    out = [
        ("command", f"closuretrace {run.command}"),
        ("argv", " ".join(run.argv) or "(none)"),
        ("outcome", f"{run.outcome}, exit {run.exit_code}"),
        ("started", run.started_at or "?"),
        ("duration", fmt_seconds(run.duration_s)),
        ("working directory", run.cwd or "?"),
        ("python", run.python or "?"),
        ("platform", run.platform or "?"),
    ]
    if run.versions:
        out.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))))
    if session.settings:
        out.append(("settings", json.dumps(session.settings, sort_keys=True, default=str)))
    if session.events:
        kinds = Counter(e.kind for e in session.events)
        out.append(("events", ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items()))))
    seconds = [c.seconds for c in session.cycles]
    if seconds:
        out.append(("cycle time", f"{fmt_seconds(min(seconds))} to {fmt_seconds(max(seconds))}"))
    return out


def _chart_views(session: Session) -> list[dict[str, Any]]:
    by_metric = {v.metric: v for v in session.verdicts}
    out = []
    for chart in charts.session_charts(session):
        v = by_metric.get(chart.key)
        view = _verdict_view(session, v) if v is not None else None
        out.append({"title": chart.title, "svg": Markup(chart.svg), "verdict": view})
    return out


def render(session: Session) -> str:
    """The session as one self-contained HTML page."""
    argv = " ".join(session.run.argv) or "(no argv)"
    context = {
        "title": f"closuretrace: {status_word(session)} · {_clip(argv, 80)}",
        "state": session.status,
        "status_word": status_word(session),
        "finding": session.finding,
        "headline": headline(session),
        "outcome": f"{session.run.outcome}, exit {session.run.exit_code}",
        "run_ok": session.finished_normally,
        "error": session.run.error or "",
        "warmup": session.warmup,
        "verdicts": [_verdict_view(session, v) for v in session.verdicts],
        "charts": _chart_views(session),
        "chains": [
            {
                "metric": ", ".join(c.metrics),
                "target": c.target,
                "born": c.born_cycle,
                "hops": [_split_hop(h) for h in c.chain],
                "found": c.found,
                "note": c.note or "",
                "role": holder_sentence(c, session.verification),
            }
            for c in session.retention
        ],
        "unexplained": list(session.unexplained),
        "verification": verification_lines(session),
        "advice": [_segments(a) for a in session.advice],
        "factories": factory_rows(session),
        "types": [
            {
                "short": short_type(g.type),
                "full": g.type,
                "slope": fmt_value(g.slope_per_cycle, "", True),
                "every": g.grows_every_cycle,
                "counts": f"{g.counts[0]:,} → {g.counts[-1]:,}" if g.counts else "",
            }
            for g in session.growing_types
        ],
        "lifetimes": _lifetime_rows(session),
        "details": _details(session),
        "data": session.to_dict(),
        "version": __version__,
    }
    return _env().get_template("session.html.j2").render(context)


def _segments(text: str) -> list[dict[str, Any]]:
    """Advice marks code with backticks: ``[{"code": False, "text": ...}, {"code": True, "text": ...}]``."""
    parts = re.split(r"(`[^`\n]+`)", text)
    return [
        {"code": True, "text": p[1:-1]} if i % 2 else {"code": False, "text": p}
        for i, p in enumerate(parts)
        if p
    ]


def _split_hop(hop: str) -> dict[str, str]:
    """``"train.history → list"`` -> ``{"edge": "train.history", "node": "list"}`` (the chain label scheme)."""
    edge, sep, node = hop.partition(" → ")
    return {"edge": edge, "node": node} if sep else {"edge": "", "node": hop}


# -- diff -------------------------------------------------------------------------------------------------

_CHANGE_CLASS = {"fixed": "flat", "still leaking": "leak", "new leak": "leak", "no leak": "few", "": ""}


def render_diff(diff: SessionDiff) -> str:
    """Two sessions compared (before ``A``, after ``B``) as one self-contained HTML page."""
    state = diff.status
    metrics = []
    for m in diff.metrics:
        wa = verdict_word(m.a) if m.a is not None else "not measured"
        wb = verdict_word(m.b) if m.b is not None else "not measured"
        metrics.append(
            {
                "label": m.label,
                "metric": m.metric,
                "a": fmt_rate(m.slope_a, m.unit),
                "a_ci": fmt_ci(m.a) if m.a is not None else "",
                "a_word": wa,
                "a_cls": verdict_class(m.a),
                "b": fmt_rate(m.slope_b, m.unit),
                "b_ci": fmt_ci(m.b) if m.b is not None else "",
                "b_word": wb,
                "b_cls": verdict_class(m.b),
                "ratio": fmt_ratio(m.ratio),
                "change": m.change,
                "change_cls": _CHANGE_CLASS.get(m.change, ""),
            }
        )
    rss = charts.diff_chart("diff-rss", diff.a, diff.b, "rss_bytes", diff.name_a, diff.name_b, "RSS (MiB)",
                               charts.MiB)
    closures = charts.diff_chart("diff-closures", diff.a, diff.b, "closures_alive", diff.name_a, diff.name_b,
                                    "closures alive")
    context = {
        "title": f"closuretrace diff: {state} · {_clip(diff.headline, 100)}",
        "state": state,
        "state_cls": _CHANGE_CLASS[state] or "few",
        "headline": diff.headline,
        "conclusion": diff.conclusion,
        "name_a": diff.name_a,
        "name_b": diff.name_b,
        "headline_a": headline(diff.a),
        "headline_b": headline(diff.b),
        "metrics": metrics,
        "charts": [
            {"title": title, "svg": Markup(svg)}
            for title, svg in (("RSS, A and B", rss), ("closures alive, A and B", closures))
            if svg is not None
        ],
        "factories": diff.factories,
        "vanished": [_type_view(g.type, g.slope_per_cycle, g.counts) for g in diff.types_vanished],
        "appeared": [_type_view(g.type, g.slope_per_cycle, g.counts) for g in diff.types_appeared],
        "data": diff.to_dict(),
        "version": __version__,
    }
    return _env().get_template("diff.html.j2").render(context)


def _type_view(name: str, slope: float, counts: list[int]) -> dict[str, str]:
    return {
        "short": short_type(name),
        "full": name,
        "slope": fmt_value(slope, "", True),
        "counts": f"{counts[0]:,} → {counts[-1]:,}" if counts else "",
    }


# -- compare ----------------------------------------------------------------------------------------------

def render_compare(session: CompareSession) -> str:
    """A ``closuretrace compare`` report as one self-contained HTML page: conclusion, charts, ranking."""
    from closuretrace.renderers import compare_format as cf

    failed = sum(1 for s in session.scenarios if not s.ok)
    if session.run.outcome in ("interrupted", "terminated"):
        state, word = "inconclusive", session.run.outcome.capitalize()
    elif failed:
        state, word = "leak", f"{failed} failed"
    else:
        state, word = "flat", "Done"
    charts_ = []
    slope_svg = charts.compare_slope_chart(session)
    if slope_svg is not None:
        charts_.append({"title": "RSS growth per cycle, with 95% CI", "svg": Markup(slope_svg)})
    growth_svg = charts.compare_growth_chart(session)
    if growth_svg is not None:
        charts_.append({"title": "RSS per cycle, from the first measured cycle", "svg": Markup(growth_svg)})
    graphs_svg = charts.compare_growth_chart(
        session, "tf_func_graphs", 1.0, "live TF FuncGraphs since the warm-up"
    )
    if graphs_svg is not None:
        charts_.append({"title": "TF FuncGraphs per cycle, from the first measured cycle", "svg": Markup(graphs_svg)})
    context = {
        "title": f"closuretrace compare · {len(session.scenarios)} scenarios",
        "state": state,
        "status_word": word,
        "headline": cf.headline(session),
        "lead": session.summary,
        "intro": (
            f"The seed's loop ({session.settings.get('model', 'MLP')}) run as {len(session.scenarios)} scenarios, "
            f"each in its own Python process; data: {session.settings.get('data', '?')}."
        ),
        "conclusion": session.conclusion,
        "charts": charts_,
        "ranking": cf.ranking_rows(session),
        "warmup": session.warmup,
        "comparisons": cf.comparison_rows(session),
        "save_rows": cf.save_rows(session),
        "save_value": session.save_check.get("value"),
        "save_error": str(session.save_check.get("error") or ""),
        "environment": cf.environment_rows(session),
        "settings": cf.settings_rows(session),
        "data": session.to_dict(),
        "version": __version__,
    }
    return _env().get_template("compare.html.j2").render(context)
