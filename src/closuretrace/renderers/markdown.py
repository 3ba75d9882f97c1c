"""GitHub-flavoured Markdown: the report for a pull request comment or a CI step summary.

It reads as plain text too. Everything the profiled program controls (reprs, names, argv, error text) is
escaped: identifiers go into code spans, prose gets backslash escapes, and neither a ``|`` nor a newline nor
``<script>`` in a repr can break a table or inject HTML.
"""

from __future__ import annotations

import re

from closuretrace.renderers.format import (
    factory_rows,
    fmt_ci,
    fmt_value,
    headline,
    short_type,
    status_word,
    verdict_word,
)
from closuretrace.renderers.holder_text import holder_sentence, verification_lines
from closuretrace.session import CompareSession, Session
from closuretrace.session.diff import SessionDiff
from closuretrace.units import fmt_rate, fmt_ratio

MAX_FACTORIES = 20
MAX_TYPES = 10
#: Longest user-controlled text in a table cell (reprs can be huge).
MAX_CELL = 80

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Characters that mean something to Markdown or HTML inline: always escaped in prose (``>`` only matters at the
#: start of a line, where user text never is).
_PROSE_SPECIAL = re.compile(r"([\\`*\[\]<|&~])")
#: ``_`` only opens or closes emphasis next to a non-word character, so ``outer_loss`` stays as it is.
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _clean(text: object, newline: str, limit: int | None) -> str:
    s = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", newline)
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def escape(text: object, limit: int | None = None) -> str:
    """User text as Markdown prose: shows literally, on one line, with no link, emphasis or HTML."""
    s = _clean(text, " ", limit)
    s = _PROSE_SPECIAL.sub(r"\\\1", s)
    return _UNDERSCORE.sub(r"\\_", s)


def code(text: object, table: bool = False, limit: int | None = None) -> str:
    """User text as a code span (``<`` and ``*`` are literal there); ``|`` escaped inside tables."""
    s = _clean(text, "\\n", limit)
    if not s:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s[0] == "`" or s[-1] == "`" or (s[0] == " " and s[-1] == " " and s.strip(" ")):
        s = f" {s} "
    if table:
        s = s.replace("|", "\\|")
    return f"{fence}{s}{fence}"


def prose(text: object) -> str:
    """Like :func:`escape`, but text between backticks becomes a code span (how advice marks code)."""
    parts = re.split(r"(`[^`\n]+`)", str(text))
    return "".join(code(p[1:-1]) if i % 2 else escape(p) for i, p in enumerate(parts))


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    align = ["---:" if i in (right or set()) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return lines


def run_line(session: Session) -> str:
    """When, where and how long: ``started ..., Python 3.11.2 on Linux, 6 cycles (1 warm-up)``; plain text."""
    run = session.run
    warmup = session.warmup
    parts = []
    if run.started_at:
        parts.append(f"started {run.started_at}")
    if run.python:
        parts.append(f"Python {run.python}" + (f" on {run.platform}" if run.platform else ""))
    parts.append(f"{len(session.cycles)} cycles ({warmup} warm-up)")
    return ", ".join(parts)


def _verdict_cell(word: str) -> str:
    return f"**{word}**" if word == "LEAK" else word


def render(session: Session) -> str:
    """The session as GitHub-flavoured Markdown."""
    lines = [f"# {escape(headline(session))}", ""]
    lines += [f"**{status_word(session)}**: {escape(session.finding)}", ""]
    lines.append(f"Run: {escape(run_line(session))}")
    if session.run.error:
        lines += ["", f"Error: {code(session.run.error, limit=500)}"]

    warmup = session.warmup
    lines += [
        "",
        "## Verdicts",
        "",
        f"Growth per cycle: robust slope (Theil–Sen; least squares under 5 cycles) over the cycles after {warmup} "
        "warm-up, with its 95% confidence interval; one-off steps are reported apart. A leak needs a consistent "
        "rise, the interval clear of zero and the slope above the metric's noise floor; a series that rose and "
        "stopped (bounded) is not one.",
        "",
    ]
    if session.verdicts:
        rows = []
        notes = []
        for v in session.verdicts:
            info = session.metric_info(v.metric)
            rows.append(
                [
                    escape(info.label or v.metric),
                    fmt_value(v.slope_per_cycle, v.unit, True),
                    fmt_ci(v),
                    _verdict_cell(verdict_word(v)),
                ]
            )
            if v.note:
                notes.append(f"- {escape(info.label or v.metric)}: {prose(v.note)}")
        lines += _table(["metric", "per cycle", "95% CI", "verdict"], rows, right={1})
        if notes:
            lines += ["", *notes]
    else:
        lines.append("No cycles measured.")

    lines += ["", "## Closures by factory", ""]
    frows = factory_rows(session)
    if frows:
        rows = [
            [
                code(r["factory"], table=True, limit=MAX_CELL),
                escape(r["kind"]),
                str(r["created"]),
                str(r["freed"]),
                str(r["alive"]),
                str(r["ids_reused"]),
                code(r["largest"], table=True, limit=MAX_CELL),
            ]
            for r in frows[:MAX_FACTORIES]
        ]
        lines += _table(
            ["factory", "kind", "created", "freed", "alive at end", "ids reused", "largest capture"],
            rows,
            right={2, 3, 4, 5},
        )
        if len(frows) > MAX_FACTORIES:
            lines += ["", f"… and {len(frows) - MAX_FACTORIES} more factories (see the HTML or JSON report)."]
    else:
        lines.append("No closures seen.")

    if session.growing_types:
        lines += ["", "## Types that grow", ""]
        rows = [
            [
                code(short_type(g.type), table=True, limit=MAX_CELL),
                fmt_value(g.slope_per_cycle, "", True),
                "yes" if g.grows_every_cycle else "no",
                f"{g.counts[0]:,} → {g.counts[-1]:,}" if g.counts else "",
            ]
            for g in session.growing_types[:MAX_TYPES]
        ]
        lines += _table(["type", "per cycle", "every cycle", "first → last"], rows, right={1})
        if len(session.growing_types) > MAX_TYPES:
            lines += ["", f"… and {len(session.growing_types) - MAX_TYPES} more types."]

    for chain in session.retention:
        born = f", born in cycle {chain.born_cycle}" if chain.born_cycle is not None else ""
        lines += [
            "",
            f"## What keeps it alive ({escape(', '.join(chain.metrics))})",
            "",
            f"Target: {code(chain.target, limit=200)}{born}",
            "",
        ]
        role = holder_sentence(chain, session.verification)
        if role:
            lines += [prose(role), ""]
        if chain.found and chain.chain:
            lines += [f"{i}. {code(hop, limit=200)}" for i, hop in enumerate(chain.chain, 1)]
        elif not chain.found:
            lines.append("No chain found.")
        if chain.note:
            lines += ["", f"Note: {prose(chain.note)}"]
    if session.unexplained:
        lines += ["", "## Growth no holder explains", ""]
        lines += [f"- {prose(u)}" for u in session.unexplained]
    if session.verification:
        lines += ["", "## Verification (a re-run that lets go of the holder)", ""]
        lines += [f"- {prose(t)}" for t in verification_lines(session)]

    if session.advice:
        lines += ["", "## Advice", ""]
        lines += [f"- {prose(a)}" for a in session.advice]
    return "\n".join(lines) + "\n"


# -- diff -------------------------------------------------------------------------------------------------

def _change_cell(change: str) -> str:
    return f"**{change}**" if change in ("still leaking", "new leak") else change


def render_diff(diff: SessionDiff) -> str:
    """A comparison of two sessions (before ``A``, after ``B``) as GitHub-flavoured Markdown."""
    a, b = diff.a, diff.b
    lines = [
        f"# closuretrace diff: {escape(diff.headline)}",
        "",
        f"**{escape(diff.conclusion)}**",
        "",
        f"- A: {code(diff.name_a)}: {escape(headline(a))}",
        f"- B: {code(diff.name_b)}: {escape(headline(b))}",
        "",
        "## Growth per cycle",
        "",
    ]
    if diff.metrics:
        rows = []
        for m in diff.metrics:
            rows.append(
                [
                    escape(m.label),
                    fmt_rate(m.slope_a, m.unit),
                    _verdict_cell(verdict_word(m.a)) if m.a else "not measured",
                    fmt_rate(m.slope_b, m.unit),
                    _verdict_cell(verdict_word(m.b)) if m.b else "not measured",
                    fmt_ratio(m.ratio),
                    _change_cell(m.change),
                ]
            )
        lines += _table(["metric", "A per cycle", "A", "B per cycle", "B", "B/A", "change"], rows, right={1, 3, 5})
    else:
        lines.append("Neither session has a verdict.")

    if diff.factories:
        lines += ["", "## Closures by factory", ""]
        rows = [
            [
                code(f.factory, table=True, limit=MAX_CELL),
                str(f.created_a),
                str(f.alive_a),
                str(f.created_b),
                str(f.alive_b),
            ]
            for f in diff.factories[:MAX_FACTORIES]
        ]
        lines += _table(
            ["factory", "A created", "A alive at end", "B created", "B alive at end"], rows, right={1, 2, 3, 4}
        )
        if len(diff.factories) > MAX_FACTORIES:
            lines += ["", f"… and {len(diff.factories) - MAX_FACTORIES} more factories."]

    for title, types in (
        ("Types that stopped growing (growing in A, not in B)", diff.types_vanished),
        ("Types that started growing (growing in B, not in A)", diff.types_appeared),
    ):
        if types:
            lines += ["", f"## {title}", ""]
            lines += [
                f"- {code(short_type(g.type), limit=MAX_CELL)}: {fmt_value(g.slope_per_cycle, '', True)}/cycle"
                + (f" ({g.counts[0]:,} → {g.counts[-1]:,})" if g.counts else "")
                for g in types[:MAX_TYPES]
            ]
            if len(types) > MAX_TYPES:
                lines.append(f"- … and {len(types) - MAX_TYPES} more")
    return "\n".join(lines) + "\n"


# -- compare ----------------------------------------------------------------------------------------------

def render_compare(session: CompareSession) -> str:
    """A ``closuretrace compare`` report as GitHub-flavoured Markdown: conclusion, ranking, save check."""
    from closuretrace.renderers import compare_format as cf

    st = session.settings
    lines = [f"# {escape(cf.headline(session))}", ""]
    lines.append(
        f"The seed's loop ({escape(st.get('model', 'MLP'))}) run as {len(session.scenarios)} scenarios, each in its "
        f"own Python process; data: {escape(st.get('data', '?'))}."
    )
    if session.run.outcome in ("interrupted", "terminated"):
        word = "Interrupted" if session.run.outcome == "interrupted" else "Terminated by SIGTERM"
        lines += ["", f"**{word}**: the report holds the scenarios that finished."]
    lines += ["", f"**{escape(session.summary)}**", "", "## Conclusion", ""]
    lines += [f"- {escape(c)}" for c in session.conclusion] or ["No conclusion (no scenario finished)."]

    warmup = session.warmup
    lines += [
        "",
        "## Growth per cycle, steepest RSS first",
        "",
        f"Robust slope (Theil–Sen) over the cycles after {escape(warmup)} warm-up, 95% confidence interval, as "
        "`closuretrace profile` computes it. graphs: live TF FuncGraphs per cycle; traces: new traces of the "
        "train function per cycle; closures: created / alive at the end; s/cycle: seconds in compile() and in fit() "
        "(the probes left out); "
        "offset: the evaluated loss minus the plain cross-entropy.",
        "",
    ]
    rows = []
    for r in cf.ranking_rows(session):
        rows.append(
            [
                str(r["rank"]),
                code(r["name"], table=True),
                r["rss"],
                r["rss_ci"],
                _verdict_cell(r["rss_word"]) if r["rss_word"] != "failed" else "**failed**",
                r["graphs"],
                r["gc"],
                r["traces"],
                r["closures"],
                r["split"],
                r["loss"],
                r["accuracy"],
                r["offset"],
            ]
        )
    lines += _table(
        ["#", "scenario", "RSS/cycle", "95% CI", "verdict", "graphs", "gc objects", "traces", "closures",
         "s/cycle: compile + fit", "loss", "accuracy", "offset"],
        rows,
        right={0, 2, 5, 6, 7, 9, 10, 11, 12},
    )
    failed = [r for r in cf.ranking_rows(session) if not r["ok"]]
    if failed:
        lines += ["", "Failed scenarios:", ""]
        for r in failed:
            last = [ln for ln in str(r["error"]).strip().splitlines() if ln.strip()]
            lines.append(f"- {code(r['name'])}: {code(last[-1] if last else 'failed', limit=300)}")

    crows = cf.comparison_rows(session)
    if crows:
        lines += [
            "",
            "## What the conclusion is drawn from",
            "",
            "Scenarios paired so that they differ in one factor only; the difference of their slopes (A − B) "
            "with its 95% interval, pooled over the pairs. A factor moves a metric when that difference and the "
            "difference of the median per-cycle steps both clear the interval and the metric's noise floor (one "
            "jump of RSS in a single cycle tilts a slope, not a median step).",
            "",
        ]
        rows = [
            [
                escape(r["factor"]),
                escape(r["metric"]),
                escape(r["setting"]),
                f"{escape(r['a'])}: {r['a_slope']}",
                f"{escape(r['b'])}: {r['b_slope']}",
                r["difference"],
                str(r["pairs"]),
                f"**{r['word']}**" if r["moves"] else r["word"],
            ]
            for r in crows
        ]
        lines += _table(["factor", "metric", "pairs of", "A", "B", "A − B (95%)", "pairs", ""], rows, right={6})

    srows = cf.save_rows(session)
    lines += ["", "## Saving the model (.keras)", ""]
    if srows:
        value = session.save_check.get("value")
        lines += [
            f"A model compiled with a loss that adds {escape(value)}, saved with `model.save()` and loaded back; "
            "\"value kept\" is measured: the loaded model's loss minus the plain cross-entropy.",
            "",
        ]
        rows = [
            [
                escape(r["case"]),
                code(r["how"], table=True, limit=160),
                r["saved"],
                r["loaded"],
                r["value"],
                r["loaded_value"],
                code(r["error"], table=True, limit=300) if r["error"] else "",
            ]
            for r in srows
        ]
        lines += _table(["loss", "loaded with", "saved", "loaded", "value kept", "loss adds", "error"], rows)
    else:
        err = session.save_check.get("error")
        lines.append(f"The save check did not run: {code(str(err or 'unknown')[-300:])}")

    lines += ["", "## Environment", ""]
    lines += [f"- {escape(k)}: {escape(v)}" for k, v in cf.environment_rows(session)]
    lines += ["", "## Settings", ""]
    lines += [f"- {escape(k)}: {escape(v)}" for k, v in cf.settings_rows(session)]
    return "\n".join(lines) + "\n"
