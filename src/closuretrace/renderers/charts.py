"""Charts for the HTML report: matplotlib figures saved as inline SVG text.

Figures are built with :class:`matplotlib.figure.Figure` directly (never pyplot, whose global state is not
ours), glyphs are drawn as paths (no font to load), and ``svg.hashsalt`` plus an empty date make the output
the same on every run. Each chart marks the warm-up cycles (shaded, hollow markers) and draws the fitted
slope over the measured cycles (dashed), so the picture shows what the verdict was computed from.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from closuretrace.analysis.stats import fit_slope
from closuretrace.session import Session
from closuretrace.units import fmt_value

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

MiB = 1024 * 1024
#: Lines drawn one per factory; the rest are summed into one "other" line.
MAX_FACTORY_LINES = 6
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_WIDTH_IN, _HEIGHT_IN = 6.4, 3.0
#: Longest legend label (factory names can be anything).
MAX_LABEL = 48


@dataclass
class Line:
    """One measured series: ``ys[i]`` at cycle ``xs[i]``; ``scale`` divides the values for the y axis."""

    label: str
    xs: list[int]
    ys: list[float]
    unit: str = ""
    fit: bool = True


@dataclass
class Chart:
    """A chart ready for the page: the metric it shows (``key``), a title and the SVG markup."""

    key: str
    title: str
    svg: str


def _mpl_text(s: str, limit: int = MAX_LABEL) -> str:
    """Text for matplotlib drawn as it is, on one line: ``$`` would start mathtext (and raise on bad syntax)."""
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _svg(fig: Figure, salt: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"closuretrace-{salt}", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r"\n\s*\n", "\n", text).strip()


def series_chart(
    key: str,
    lines: Sequence[Line],
    warmup: int,
    ylabel: str,
    scale: float = 1.0,
    legend: bool = True,
) -> str:
    """SVG of one or more series against the cycle index, warm-up shaded, each with its fitted slope."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    legend_rows = math.ceil((len(lines) + 1) / 2) if len(lines) > 1 else 0
    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN + 0.17 * legend_rows), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    handles: list[Artist] = []
    labels: list[str] = []
    first = min((x for ln in lines for x in ln.xs), default=0)
    warm_handle = None
    if warmup > 0:
        warm_handle = ax.axvspan(first - 0.5, first + warmup - 0.5, color="#9e9e9e", alpha=0.22, lw=0)
    for i, ln in enumerate(lines):
        color = _COLORS[i % len(_COLORS)]
        ys = [y / scale for y in ln.ys]
        (h,) = ax.plot(ln.xs, ys, color=color, lw=1.6, marker="o", ms=4)
        handles.append(h)
        labels.append(_mpl_text(ln.label))
        warm = [(x, y) for x, y in zip(ln.xs, ys) if x < first + warmup]
        if warm:
            ax.plot([x for x, _ in warm], [y for _, y in warm], ls="none", marker="o", ms=5,
                    markerfacecolor="white", markeredgecolor=color)
        meas = [(x, y) for x, y in zip(ln.xs, ln.ys) if x >= first + warmup]
        if ln.fit and len(meas) >= 2:
            s = fit_slope([y for _, y in meas])
            if math.isfinite(s.slope) and math.isfinite(s.intercept):
                x0, x1 = meas[0][0], meas[-1][0]
                fit_color = "#222222" if len(lines) == 1 else color
                ax.plot([x0, x1], [s.intercept / scale, (s.intercept + s.slope * (len(meas) - 1)) / scale],
                        color=fit_color, lw=1.2, ls="--", alpha=0.8, zorder=3)
                if len(lines) == 1:
                    (fh,) = ax.plot([], [], color=fit_color, lw=1.2, ls="--")
                    handles.append(fh)
                    labels.append(_mpl_text(f"fit {fmt_value(s.slope, ln.unit, True)}/cycle"))
    ax.set_xlabel("cycle", fontsize=9)
    ax.set_ylabel(_mpl_text(ylabel), fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"))
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e0e0e0", lw=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    if warm_handle is not None:
        handles.append(warm_handle)
        labels.append("warm-up (not fitted)")
    if legend and handles:
        if len(lines) == 1:
            ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.85, edgecolor="#dddddd")
        else:  # one entry per series: below the plot, where it hides nothing
            fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    return _svg(fig, key)


def _xs(session: Session, metric: str) -> tuple[list[int], list[float]]:
    pts = [(c.index, float(c.metrics[metric])) for c in session.cycles if metric in c.metrics]
    return [p[0] for p in pts], [p[1] for p in pts]


def _label(session: Session, metric: str) -> str:
    return session.metric_info(metric).label or metric


def session_charts(session: Session) -> list[Chart]:
    """The report's charts: RSS, gc objects, closures alive per factory, TF FuncGraphs (those measured)."""
    warmup = int(session.settings.get("warmup", 1))
    charts: list[Chart] = []
    for metric, ylabel, scale, unit in (
        ("rss_bytes", "RSS (MiB)", MiB, "bytes"),
        ("gc_objects", "gc objects", 1.0, "objects"),
    ):
        xs, ys = _xs(session, metric)
        if xs:
            unit = session.metric_info(metric).unit or unit
            line = Line("measured", xs, ys, unit)
            charts.append(Chart(metric, _label(session, metric), series_chart(metric, [line], warmup, ylabel, scale)))

    factory_lines = _factory_lines(session)
    if factory_lines:
        svg = series_chart("closures", factory_lines, warmup, "closures alive")
        charts.append(Chart("closures_alive", "closures alive, per factory", svg))
    else:
        xs, ys = _xs(session, "closures_alive")
        if xs:
            line = Line("measured", xs, ys, "closures")
            charts.append(
                Chart("closures_alive", "closures alive", series_chart("closures", [line], warmup, "closures alive"))
            )

    xs, ys = _xs(session, "tf_func_graphs")
    if xs:
        line = Line("measured", xs, ys, "graphs")
        charts.append(
            Chart("tf_func_graphs", _label(session, "tf_func_graphs"),
                  series_chart("tf_func_graphs", [line], warmup, "live FuncGraphs"))
        )
    return charts


def _factory_lines(session: Session) -> list[Line]:
    names: list[str] = []
    for c in session.cycles:
        names.extend(f for f in c.closures_alive_by_factory if f not in names)
    if not names:
        return []
    xs = [c.index for c in session.cycles]
    series = {f: [float(c.closures_alive_by_factory.get(f, 0)) for c in session.cycles] for f in names}
    ranked = sorted(names, key=lambda f: (-series[f][-1], -max(series[f]), f))
    shown = ranked[:MAX_FACTORY_LINES]
    out = [Line(f, xs, series[f], "closures") for f in shown]
    rest = ranked[MAX_FACTORY_LINES:]
    if rest:
        total = [sum(series[f][i] for f in rest) for i in range(len(xs))]
        out.append(Line(f"{len(rest)} other factories", xs, total, "closures"))
    return out


def compare_chart(
    key: str, a: Session, b: Session, metric: str, name_a: str, name_b: str, ylabel: str, scale: float = 1.0
) -> str | None:
    """One metric of two sessions on the same axes (A then B), each with its own fit; None if neither has it."""
    xa, ya = _xs(a, metric)
    xb, yb = _xs(b, metric)
    if not xa and not xb:
        return None
    unit = a.metric_info(metric).unit or b.metric_info(metric).unit
    lines = []
    if xa:
        lines.append(Line(f"A: {name_a}", xa, ya, unit))
    if xb:
        lines.append(Line(f"B: {name_b}", xb, yb, unit))
    warmup = min(int(a.settings.get("warmup", 1)), int(b.settings.get("warmup", 1)))
    return series_chart(key, lines, warmup, ylabel, scale)
