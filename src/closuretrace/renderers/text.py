"""The terminal summary: verdicts, closures by factory, growing types, retention chains, advice.

The same text ends ``closuretrace profile`` and a failing pytest check, so it is plain (no colour codes) and
fits 100 columns.
"""

from __future__ import annotations

import textwrap

from closuretrace.renderers.format import (
    factory_rows,
    fmt_ci,
    fmt_value,
    headline,
    short_type,
    verdict_word,
)
from closuretrace.renderers.holder_text import holder_sentence, verification_lines
from closuretrace.session import CompareSession, Session

MAX_FACTORIES = 12
MAX_TYPES = 8
WIDTH = 100


#: A text column is never clipped below this width.
MIN_COLUMN = 12


def _one_line(text: object) -> str:
    """``text`` on one line: newlines and runs of blanks become one space (user text can hold anything)."""
    return " ".join(str(text).split())


def _wrap(text: object, indent: str = "", subsequent: str = "    ") -> list[str]:
    """Prose wrapped to :data:`WIDTH` columns."""
    return textwrap.wrap(_one_line(text), WIDTH, initial_indent=indent, subsequent_indent=subsequent) or [indent]


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns aligned, one line per row, at most :data:`WIDTH` wide: the widest text column is clipped (…)."""
    rows = [[_one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    excess = 2 + sum(widths) + 2 * (len(widths) - 1) - WIDTH
    while excess > 0:
        free = [i for i in range(len(widths)) if i not in right and widths[i] > MIN_COLUMN]
        if not free:
            break
        i = max(free, key=lambda j: widths[j])
        cut = min(excess, widths[i] - MIN_COLUMN)
        widths[i] -= cut
        excess -= cut
    out = []
    for r in rows:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths)]
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def render(session: Session) -> str:
    """Plain-text summary of a session, as printed at the end of ``closuretrace profile``."""
    lines = _wrap(headline(session))
    if session.run.error:
        lines += _wrap(f"error: {session.run.error}", "  ")
    warmup = session.warmup
    lines += ["", f"Verdicts (growth per cycle, robust slope over the cycles after {warmup} warm-up, 95% CI)"]
    if session.verdicts:
        rows = [["metric", "per cycle", "95% CI", "verdict"]]
        for v in session.verdicts:
            label = session.metric_info(v.metric).label or v.metric
            rows.append([label, fmt_value(v.slope_per_cycle, v.unit, True), fmt_ci(v), verdict_word(v)])
        lines += _table(rows, right={1})
        for v in session.verdicts:
            if v.note and v.state != "too_few":
                label = session.metric_info(v.metric).label or v.metric
                lines += textwrap.wrap(f"{label}: {v.note}", WIDTH, initial_indent="  ", subsequent_indent="    ")
    else:
        lines.append("  (no cycles measured)")

    frows = factory_rows(session)
    lines += ["", "Closures by factory"]
    if frows:
        rows = [["factory", "kind", "created", "freed", "alive at end", "ids reused", "largest capture"]]
        for r in frows[:MAX_FACTORIES]:
            rows.append([str(r[k]) for k in ("factory", "kind", "created", "freed", "alive", "ids_reused", "largest")])
        lines += _table(rows, right={2, 3, 4, 5})
        if len(frows) > MAX_FACTORIES:
            lines.append(f"  ... and {len(frows) - MAX_FACTORIES} more factories (see the report)")
    else:
        lines.append("  (no closures seen)")

    if session.growing_types:
        lines += ["", "Types that grow"]
        rows = [["type", "per cycle", "every cycle", "first -> last"]]
        for g in session.growing_types[:MAX_TYPES]:
            rows.append(
                [
                    short_type(g.type),
                    fmt_value(g.slope_per_cycle, "", True),
                    "yes" if g.grows_every_cycle else "no",
                    f"{g.counts[0]:,} -> {g.counts[-1]:,}" if g.counts else "n/a",
                ]
            )
        lines += _table(rows, right={1})

    for chain in session.retention:
        born = f", born in cycle {chain.born_cycle}" if chain.born_cycle is not None else ""
        lines += ["", *_wrap(f"What keeps it alive ({', '.join(chain.metrics)}): {chain.target}{born}")]
        role = holder_sentence(chain, session.verification)
        if role:
            lines += _wrap(role, "  ", "  ")
        if chain.found:
            for i, hop in enumerate(chain.chain, 1):
                lines += _wrap(hop, f"  {i}. ", "       ")
        if chain.note:
            lines += _wrap(f"({chain.note})", "  ")

    for u in session.unexplained:
        lines += ["", *_wrap(u, "", "")]
    if session.verification:
        lines += ["", "Verification"]
        for t in verification_lines(session):
            lines += textwrap.wrap(t, WIDTH, initial_indent="  - ", subsequent_indent="    ")

    if session.advice:
        lines += ["", "Advice"]
        for a in session.advice:
            lines += textwrap.wrap(a, WIDTH, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def render_compare(session: CompareSession) -> str:
    """Plain-text summary of a ``compare`` report: the ranking and the conclusion, as the command prints it."""
    from closuretrace.renderers import compare_format as cf

    lines = [cf.headline(session), ""]
    warmup = session.warmup
    lines.append(f"Growth per cycle, steepest RSS first (robust slope after {warmup} warm-up, 95% CI)")
    rows = [["#", "scenario", "RSS/cycle", "95% CI", "graphs", "traces", "closures", "s/cycle"]]
    for r in cf.ranking_rows(session):
        if not r["ok"]:
            rows.append([str(r["rank"]), r["name"], "FAILED", "", "", "", "", ""])
            continue
        rows.append(
            [str(r["rank"]), r["name"], r["rss"], r["rss_ci"], r["graphs"], r["traces"], r["closures"], r["seconds"]]
        )
    lines += _table(rows, right={0, 2, 4, 5, 7})
    lines.append("  (graphs: TF FuncGraphs per cycle; traces: new train-function traces per cycle; "
                 "closures: created / alive at end)")
    lines += ["", *textwrap.wrap(session.summary, WIDTH)]
    if session.conclusion:
        lines += ["", "Conclusion"]
        for sentence in session.conclusion:
            lines += textwrap.wrap(sentence, WIDTH, initial_indent="  - ", subsequent_indent="    ")
    for s in session.scenarios:
        if s.error:
            last = [ln for ln in s.error.strip().splitlines() if ln.strip()]
            lines.append(f"  ! {s.name}: {last[-1] if last else 'failed'}")
    return "\n".join(lines) + "\n"


def leak_line(session: Session) -> str:
    """One line for a CI log: every leaking metric with its slope and interval, and what holds it, e.g.
    ``leak: RSS +4.6 MiB/cycle [+4.5 MiB, +4.7 MiB] over 7 cycles, held by train.history``."""
    parts = []
    for v in session.leaks():
        label = session.metric_info(v.metric).label or v.metric
        chain = session.chain_for(v.metric)
        holder = getattr(chain, "holder", "") or (chain.root if chain is not None else "") or ""
        held = f", held by {_one_line(holder)}" if holder else ", no holder found"
        parts.append(f"{label} {fmt_value(v.slope_per_cycle, v.unit, True)}/cycle {fmt_ci(v)} over {v.n_cycles} "
                     f"cycles{held}")
    return "leak: " + "; ".join(parts) if parts else "no leak"
