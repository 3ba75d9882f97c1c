"""Two sessions side by side: did the fix work?

:func:`diff_sessions` compares a run before a change (A) with a run after it (B): the slope of every metric in
A and B with their ratio, the closures each factory made and left alive, and the types whose growth appeared
or vanished, and judges each change once. The result is plain data (:mod:`closuretrace.session.diff`); the
renderers (``render_diff`` in :mod:`closuretrace.renderers.markdown` and :mod:`closuretrace.renderers.html`) lay it
out::

    >>> from closuretrace.session import load_session
    >>> d = diff_sessions(load_session("before.json"), load_session("after.json"))   # doctest: +SKIP
    >>> d.headline                                                                      # doctest: +SKIP
    'rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)'
"""

from __future__ import annotations

import math

from closuretrace.probes import metric_def
from closuretrace.session import Session, Verdict
from closuretrace.session.diff import Change, DiffStatus, FactoryChange, MetricChange, SessionDiff
from closuretrace.units import fmt_rate, fmt_ratio

#: A's slope counts as zero (no ratio) below this fraction of the metric's noise floor.
ZERO_FRACTION_OF_FLOOR = 1e-3
#: ... and always below this absolute value (metrics with no noise floor).
ZERO_ABS = 1e-9


def change_of(a: Verdict | None, b: Verdict | None) -> Change:
    """``fixed``, ``still leaking``, ``new leak``, ``not measured in B`` or ``""`` (no leak in either)."""
    leak_a, leak_b = a is not None and a.leak, b is not None and b.leak
    if leak_a and leak_b:
        return "still leaking"
    if leak_a:
        return "fixed" if b is not None else "not measured in B"
    if leak_b:
        return "new leak"
    return ""


def metric_summary(m: MetricChange) -> str:
    """``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``."""
    text = f"{m.metric}: {fmt_rate(m.slope_a, m.unit)} -> {fmt_rate(m.slope_b, m.unit)}"
    ratio = fmt_ratio(m.ratio)
    return f"{text} ({ratio})" if ratio else text


def key_metric(metrics: list[MetricChange]) -> MetricChange | None:
    """The metric the headline is about: the first that leaks in A, else in B, else RSS, else the first."""
    for pick in (
        lambda m: m.leak_a,
        lambda m: m.leak_b,
        lambda m: m.metric == "rss_bytes",
        lambda m: True,
    ):
        for m in metrics:
            if pick(m):
                return m
    return None


def diff_status(d: SessionDiff) -> DiffStatus:
    """``still leaking``, ``new leak``, ``fixed`` or ``no leak``: the worst change wins."""
    if d.with_change("still leaking"):
        return "still leaking"
    if d.with_change("new leak"):
        return "new leak"
    if d.with_change("fixed"):
        return "fixed"
    return "no leak"


def diff_conclusion(d: SessionDiff) -> str:
    """One or two sentences: which leaks of A are gone in B, which remain, which are new."""

    def names(ms: list[MetricChange]) -> str:
        return ", ".join(m.metric for m in ms)

    parts: list[str] = []
    fixed, still, new = d.with_change("fixed"), d.with_change("still leaking"), d.with_change("new leak")
    if still:
        parts.append(f"Still leaking in {d.name_b}: {names(still)}.")
    if new:
        parts.append(f"New leak in {d.name_b}: {names(new)} (no leak in {d.name_a}).")
    if fixed:
        verb = "does" if len(fixed) == 1 else "do"
        parts.append(f"Fixed: {names(fixed)} leaked in {d.name_a} and {verb} not leak in {d.name_b}.")
    if not parts:
        parts.append(f"No leak in either run ({d.name_a}, {d.name_b}).")
    return " ".join(parts)


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
    from closuretrace.analysis.verdicts import judge_verdicts

    judge_verdicts([*a.verdicts, *b.verdicts])  # a file from before verdicts carried their state
    va = {v.metric: v for v in a.verdicts}
    vb = {v.metric: v for v in b.verdicts}
    order = list(va) + [m for m in vb if m not in va]
    metrics: list[MetricChange] = []
    for name in order:
        infos = [m for m in (*a.metrics, *b.metrics) if m.name == name]
        info = infos[0] if infos else metric_def(name).info()
        ref = va.get(name) or vb[name]
        m = MetricChange(
            metric=name,
            label=info.label or name,
            unit=ref.unit or info.unit,
            a=va.get(name),
            b=vb.get(name),
            ratio=slope_ratio(va.get(name), vb.get(name)),
            change=change_of(va.get(name), vb.get(name)),
        )
        m.summary = metric_summary(m)
        metrics.append(m)

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
    d = SessionDiff(
        a=a,
        b=b,
        name_a=name_a,
        name_b=name_b,
        metrics=metrics,
        factories=factories,
        types_appeared=[g for g in b.growing_types if g.type not in ta],
        types_vanished=[g for g in a.growing_types if g.type not in tb],
    )
    d.status = diff_status(d)
    key = key_metric(d.metrics)
    d.headline = key.summary if key is not None else "no metric measured in either session"
    d.conclusion = diff_conclusion(d)
    return d
