"""The run report of the pytest plugin (``--closuretrace-report PATH``): every recorded test, ranked by growth.

One row per test: the tests that broke a limit first, then those with leak verdicts, then by closures alive
after teardown, RSS and gc object growth per cycle. JSON (``kind: "pytest"``, ``schema_version`` 1) carries
the data; Markdown fits a CI step summary; HTML is one self-contained page (inline CSS, no script, every test
id and factory name escaped). Like every renderer these are pure functions: they never write files.
"""

from __future__ import annotations

import html
import json

from closuretrace.renderers import UnknownFormatError
from closuretrace.renderers.format import fmt_seconds, fmt_value
from closuretrace.session.pytest_run import RecordedTest, RunReport

_GROWTH = (("rss_bytes", "RSS / cycle"), ("gc_objects", "gc objects / cycle"))
_HEADER = [
    "#",
    "test",
    "result",
    "cycles",
    *(label for _, label in _GROWTH),
    "closures alive after teardown",
    "leak verdicts",
    "limits broken",
]


def growth_cell(test: RecordedTest, metric: str) -> str:
    """``+4.8 MiB [+1.7 MiB, +7.9 MiB]``, or why there is no slope (``n/a (2 cycles)``)."""
    v = test.verdict(metric)
    if v is None:
        return "n/a"
    n = int(v.get("n_cycles", 0))
    slope = v.get("slope_per_cycle")
    if v.get("state") == "too_few" or n < test.min_cycles or not isinstance(slope, (int, float)):
        return f"n/a ({n} cycle{'s' if n != 1 else ''} after warm-up)"
    unit = str(v.get("unit", ""))
    low, high = v.get("ci_low"), v.get("ci_high")
    text = fmt_value(slope, unit, True)
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        text += f" [{fmt_value(low, unit, True)}, {fmt_value(high, unit, True)}]"
    return text


def _limits_cell(test: RecordedTest) -> str:
    return ", ".join(str(c.get("limit")) for c in test.failed_checks)


def _summary_line(report: RunReport) -> str:
    tests = report.tests
    broken = sum(1 for t in tests if t.failed_checks)
    leaking = sum(1 for t in tests if t.leaks)
    return (
        f"{len(tests)} test{'s' if len(tests) != 1 else ''} recorded, {broken} broke a limit, "
        f"{leaking} with a leak verdict"
    )


def _rows(report: RunReport) -> list[tuple[RecordedTest, list[str]]]:
    out = []
    for i, t in enumerate(report.ranked(), 1):
        out.append(
            (
                t,
                [
                    str(i),
                    t.nodeid,
                    t.outcome,
                    f"{t.cycles} ({t.warmup} warm-up)",
                    *(growth_cell(t, m) for m, _ in _GROWTH),
                    str(t.closures_alive),
                    ", ".join(t.leaks),
                    _limits_cell(t),
                ],
            )
        )
    return out


def render_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def render_markdown(report: RunReport) -> str:
    from closuretrace.renderers.markdown import code, escape

    lines = [
        "# closuretrace: tests ranked by growth",
        "",
        escape(_summary_line(report)) + f" ({escape(fmt_seconds(report.duration_s))}).",
        "",
        "Growth is per cycle: robust slope (Theil–Sen) over the cycles after the warm-up, with its 95% confidence "
        f"interval (needs at least {report.min_cycles} cycles). Closures alive: made by the test and still alive after "
        "its fixtures were torn down.",
        "",
    ]
    if not report.tests:
        lines.append("No test was recorded: mark tests with `@pytest.mark.closuretrace(...)`, use the "
                     "`closuretrace` fixture, or run with `--closuretrace`.")
        return "\n".join(lines) + "\n"
    right = {0, 3, 4, 5, 6}
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("| " + " | ".join("---:" if i in right else "---" for i in range(len(_HEADER))) + " |")
    for _, cells in _rows(report):
        out = [
            cells[0],
            code(cells[1], table=True),
            "**broke limits**" if cells[2] == "broke limits" else escape(cells[2]),
            *(escape(c) for c in cells[3:7]),
            escape(cells[7]),
            escape(cells[8]),
        ]
        lines.append("| " + " | ".join(c or " " for c in out) + " |")
    broken = [t for t in report.ranked() if t.failed_checks]
    if broken:
        lines += ["", "## Limits broken", ""]
        for t in broken:
            lines.append(f"- {code(t.nodeid)}")
            for c in t.failed_checks:
                lines.append(f"  - {escape(c.get('detail', ''))}")
            if t.retention_root and not any("held by" in str(c.get("detail", "")) for c in t.failed_checks):
                lines.append(f"  - held by {code(t.retention_root)}")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#1d1d1f}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;white-space:nowrap}
tr.broken td{background:#fdecea}tr.leak td{background:#fff6e0}code{font:12px ui-monospace,monospace}
li{margin:.2em 0}
"""


def render_html(report: RunReport) -> str:
    e = html.escape
    right = {0, 3, 4, 5, 6}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>closuretrace: tests ranked by growth</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>closuretrace: tests ranked by growth</h1>",
        f"<p>{e(_summary_line(report))} ({e(fmt_seconds(report.duration_s))}). Growth is per cycle: robust "
        "slope (Theil–Sen) over the cycles after the warm-up, with its 95% confidence interval (needs at least "
        f"{report.min_cycles} cycles). Closures alive: made by the test and still alive after its fixtures were "
        "torn down.</p>",
    ]
    if report.tests:
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in _HEADER) + "</tr></thead><tbody>")
        for t, cells in _rows(report):
            cls = "broken" if t.failed_checks else ("leak" if t.leaks else "")
            tds = []
            for i, c in enumerate(cells):
                inner = f"<code>{e(c)}</code>" if i == 1 else e(c)
                tds.append(f'<td class="n">{inner}</td>' if i in right else f"<td>{inner}</td>")
            parts.append(f'<tr class="{cls}">' + "".join(tds) + "</tr>")
        parts.append("</tbody></table>")
        broken = [t for t in report.ranked() if t.failed_checks]
        if broken:
            parts.append("<h2>Limits broken</h2><ul>")
            for t in broken:
                items = "".join(f"<li>{e(str(c.get('detail', '')))}</li>" for c in t.failed_checks)
                if t.retention_root and not any("held by" in str(c.get("detail", "")) for c in t.failed_checks):
                    items += f"<li>held by <code>{e(t.retention_root)}</code></li>"
                parts.append(f"<li><code>{e(t.nodeid)}</code><ul>{items}</ul></li>")
            parts.append("</ul>")
    else:
        parts.append("<p>No test was recorded.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(report: RunReport, fmt: str) -> str:
    """``report`` in format ``fmt``: ``json``, ``markdown`` or ``html``."""
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    raise UnknownFormatError(f"unknown format {fmt!r}; use json, markdown or html")
