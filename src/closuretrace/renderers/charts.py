"""Charts for the HTML report: matplotlib figures saved as inline SVG text.

Figures are built with :class:`matplotlib.figure.Figure` directly (never pyplot, whose global state is not
ours), glyphs are drawn as paths (no font to load), and ``svg.hashsalt`` plus an empty date make the output
the same on every run. Each chart marks the warm-up cycles (shaded, hollow markers) and draws the fitted
slope over the measured cycles (dashed), so the picture shows what the verdict was computed from.
"""

from __future__ import annotations

import functools
import html
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from closuretrace.session import CompareSession, Session, Verdict
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
#: Largest magnitude handed to matplotlib: its transforms overflow near the float maximum (1.8e308).
MAX_PLOTTED = 1e300

_P = ParamSpec("_P")
_R = TypeVar("_R", str, "str | None")


@dataclass
class Line:
    """One measured series: ``ys[i]`` at cycle ``xs[i]``; ``scale`` divides the values for the y axis."""

    label: str
    xs: list[int]
    ys: list[float]
    unit: str = ""
    #: the verdict whose fitted line is drawn over the measured cycles (None: no line)
    fit: Verdict | None = None


@dataclass
class Chart:
    """A chart ready for the page: the metric it shows (``key``), a title and the SVG markup."""

    key: str
    title: str
    svg: str


def unavailable(exc: BaseException) -> str:
    """The HTML put where a chart could not be drawn: the page still renders, the note says why."""
    return f'<p class="more">chart unavailable: {html.escape(type(exc).__name__)}</p>'


def _or_note(build: Callable[_P, _R]) -> Callable[_P, _R]:
    """``build``, but an exception becomes :func:`unavailable`'s note: one bad chart must not lose the page."""

    @functools.wraps(build)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return build(*args, **kwargs)
        except Exception as exc:  # whatever matplotlib raises, the rest of the report stands
            return unavailable(exc)

    return guarded


def _plotted(y: float) -> float:
    """``y`` clamped to +-MAX_PLOTTED (infinities too); NaN stays NaN (matplotlib leaves a gap)."""
    return y if math.isnan(y) else min(max(y, -MAX_PLOTTED), MAX_PLOTTED)


def _mpl_text(s: str, limit: int = MAX_LABEL) -> str:
    """Text for matplotlib drawn as it is, on one line: ``$`` would start mathtext (and raise on bad syntax);
    a lone surrogate (a name decoded from non-UTF-8 bytes) is shown as its escape, which text layout can take."""
    s = " ".join(s.encode("utf-8", "backslashreplace").decode("utf-8").split())
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


@_or_note
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
        ys = [_plotted(y / scale) for y in ln.ys]
        (h,) = ax.plot(ln.xs, ys, color=color, lw=1.6, marker="o", ms=4)
        handles.append(h)
        labels.append(_mpl_text(ln.label))
        warm = [(x, y) for x, y in zip(ln.xs, ys) if x < first + warmup]
        if warm:
            ax.plot([x for x, _ in warm], [y for _, y in warm], ls="none", marker="o", ms=5,
                    markerfacecolor="white", markeredgecolor=color)
        meas = [(x, y) for x, y in zip(ln.xs, ln.ys) if x >= first + warmup]
        v = ln.fit
        if v is not None and len(meas) >= 2 and math.isfinite(v.slope_per_cycle) and math.isfinite(v.intercept):
            slope, intercept = v.slope_per_cycle, v.intercept
            if abs(intercept) < MAX_PLOTTED and abs(slope) * len(meas) < MAX_PLOTTED:
                x0, x1 = meas[0][0], meas[-1][0]
                fit_color = "#222222" if len(lines) == 1 else color
                y0, y1 = intercept / scale, (intercept + slope * (len(meas) - 1)) / scale
                ax.plot([x0, x1], [_plotted(y0), _plotted(y1)],
                        color=fit_color, lw=1.2, ls="--", alpha=0.8, zorder=3)
                if len(lines) == 1:
                    (fh,) = ax.plot([], [], color=fit_color, lw=1.2, ls="--")
                    handles.append(fh)
                    labels.append(_mpl_text(f"fit {fmt_value(slope, ln.unit, True)}/cycle"))
    ax.set_xlabel("cycle", fontsize=9)
    ax.set_ylabel(_mpl_text(ylabel), fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_tick))
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


def _tick(v: float, _pos: object) -> str:
    if abs(v) >= 1e15:  # not 300 digits
        return f"{v:.3g}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def _xs(session: Session, metric: str) -> tuple[list[int], list[float]]:
    pts = [(c.index, float(c.metrics[metric])) for c in session.cycles if metric in c.metrics]
    return [p[0] for p in pts], [p[1] for p in pts]


def _label(session: Session, metric: str) -> str:
    return session.metric_info(metric).label or metric


def session_charts(session: Session) -> list[Chart]:
    """The report's charts: RSS, gc objects, closures alive per factory, TF FuncGraphs (those measured).

    A chart that cannot be drawn (whatever the data) is a :func:`unavailable` note in its place."""
    warmup = session.warmup
    charts: list[Chart] = []
    for metric, ylabel, scale, unit in (
        ("rss_bytes", "RSS (MiB)", MiB, "bytes"),
        ("gc_objects", "gc objects", 1.0, "objects"),
    ):
        try:
            xs, ys = _xs(session, metric)
            if xs:
                unit = session.metric_info(metric).unit or unit
                line = Line("measured", xs, ys, unit, session.verdict(metric))
                svg = series_chart(metric, [line], warmup, ylabel, scale)
                charts.append(Chart(metric, _label(session, metric), svg))
        except Exception as exc:  # as in _or_note: one bad chart must not lose the page
            charts.append(Chart(metric, metric, unavailable(exc)))

    try:
        factory_lines = _factory_lines(session)
        if factory_lines:
            svg = series_chart("closures", factory_lines, warmup, "closures alive")
            charts.append(Chart("closures_alive", "closures alive, per factory", svg))
        else:
            xs, ys = _xs(session, "closures_alive")
            if xs:
                line = Line("measured", xs, ys, "closures", session.verdict("closures_alive"))
                svg = series_chart("closures", [line], warmup, "closures alive")
                charts.append(Chart("closures_alive", "closures alive", svg))
    except Exception as exc:
        charts.append(Chart("closures_alive", "closures alive", unavailable(exc)))

    try:
        xs, ys = _xs(session, "tf_func_graphs")
        if xs:
            line = Line("measured", xs, ys, "graphs", session.verdict("tf_func_graphs"))
            charts.append(
                Chart("tf_func_graphs", _label(session, "tf_func_graphs"),
                      series_chart("tf_func_graphs", [line], warmup, "live FuncGraphs"))
            )
    except Exception as exc:
        charts.append(Chart("tf_func_graphs", "tf_func_graphs", unavailable(exc)))
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


@_or_note
def diff_chart(
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
        lines.append(Line(f"A: {name_a}", xa, ya, unit, a.verdict(metric)))
    if xb:
        lines.append(Line(f"B: {name_b}", xb, yb, unit, b.verdict(metric)))
    warmup = min(a.warmup, b.warmup)
    return series_chart(key, lines, warmup, ylabel, scale)


# -- closuretrace compare -----------------------------------------------------------------------------------------

#: Enough distinct colours for the full matrix (20 scenarios), the first ones as in the other charts.
_MANY_COLORS = (*_COLORS, "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd",
                "#e6550d", "#31a354", "#756bb1", "#636363")
#: Bar colour per verdict state (decided by the analysis).
_STATE_COLORS = {"leak": "#c62828", "flat": "#2e7d32", "grows": "#9a5b00"}


@_or_note
def compare_growth_chart(session: CompareSession, metric: str = "rss_bytes", scale: float = MiB,
                         ylabel: str = "RSS growth since the warm-up (MiB)") -> str | None:
    """One line per scenario: ``metric`` minus its value at the first measured cycle (processes start at
    different baselines), recreate dashed, reuse solid. None when no scenario measured ``metric``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = []
    for s in session.ranked():
        pts = [(c.index, float(c.metrics[metric])) for c in s.cycles if metric in c.metrics]
        used = [p for p in pts if p[0] >= s.warmup]
        if len(used) < 2:
            continue
        base = used[0][1]
        series.append((s, [x for x, _ in used], [_plotted((y - base) / scale) for _, y in used]))
    if not series:
        return None
    rows = math.ceil(len(series) / 2)
    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN + 0.17 * rows), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    handles: list[Artist] = []
    labels: list[str] = []
    for i, (s, xs, ys) in enumerate(series):
        color = _MANY_COLORS[i % len(_MANY_COLORS)]
        (h,) = ax.plot(xs, ys, color=color, lw=1.6, marker="o", ms=3.5, ls="--" if s.strategy == "recreate" else "-")
        handles.append(h)
        labels.append(_mpl_text(s.name))
    ax.set_xlabel("cycle", fontsize=9)
    ax.set_ylabel(_mpl_text(ylabel, 60), fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e0e0e0", lw=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    return _svg(fig, f"compare-{metric}")


@_or_note
def compare_slope_chart(session: CompareSession, metric: str = "rss_bytes", scale: float = MiB,
                        xlabel: str = "RSS growth per cycle (MiB), 95% CI") -> str | None:
    """Horizontal bars: each scenario's slope of ``metric`` with its 95% interval as whiskers, steepest on top,
    coloured by verdict. None when no scenario has a verdict for ``metric``."""
    from matplotlib.figure import Figure

    bars = []
    for s in session.ranked():
        v = s.verdict(metric)
        if v is None or not math.isfinite(v.slope_per_cycle):
            continue
        lo = v.ci_low if math.isfinite(v.ci_low) else v.slope_per_cycle
        hi = v.ci_high if math.isfinite(v.ci_high) else v.slope_per_cycle
        bars.append((s.name, _plotted(v.slope_per_cycle / scale), _plotted((v.slope_per_cycle - lo) / scale),
                     _plotted((hi - v.slope_per_cycle) / scale), v.state, v.unit))
    if not bars:
        return None
    bars.reverse()  # matplotlib draws the first bar at the bottom
    fig = Figure(figsize=(_WIDTH_IN, 1.0 + 0.28 * len(bars)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(bars)))
    ax.barh(ys, [b[1] for b in bars], xerr=[[b[2] for b in bars], [b[3] for b in bars]],
            color=[_STATE_COLORS.get(b[4], "#5f6368") for b in bars], alpha=0.85, height=0.62,
            error_kw={"ecolor": "#222222", "elinewidth": 1.0, "capsize": 2.5})
    ax.set_yticks(ys, [_mpl_text(b[0]) for b in bars], fontsize=8)
    for y, b in zip(ys, bars):
        ax.annotate(_mpl_text(fmt_value(b[1] * scale, b[5], True)), (max(b[1] + b[3], 0), y), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=7, color="#444444")
    ax.axvline(0, color="#888888", lw=0.8)
    ax.set_xlabel(_mpl_text(xlabel, 60), fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="x", color="#e0e0e0", lw=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.18)
    return _svg(fig, f"compare-slopes-{metric}")
