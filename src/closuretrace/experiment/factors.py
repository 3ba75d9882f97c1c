"""The experiment's factors: which scenarios form pairs for each, compared on which metrics.

Each factor (recreating the closure, compiling every cycle, a new optimizer per compile, what the closure
captures) is judged on **pairs** of scenarios that differ in that factor only, e.g.
``recreate/numpy/same-optimizer`` against ``reuse/numpy/same-optimizer``, with
:func:`closuretrace.analysis.pairs.compare_pair`. :func:`summary` is the one-line answer a report opens with.
"""

from __future__ import annotations

from collections.abc import Sequence

from closuretrace.analysis.pairs import RSS, Pair, compare_pair
from closuretrace.session import Comparison, ScenarioResult
from closuretrace.session.compare import Factor

GRAPHS = "tf_func_graphs"
#: The metrics every factor is compared on (RSS leads every sentence; graphs explain compile).
METRICS = (RSS, GRAPHS, "gc_objects")


def _index(scenarios: Sequence[ScenarioResult]) -> dict[tuple[str, str, str], ScenarioResult]:
    return {(s.strategy, s.capture, s.compile): s for s in scenarios if s.ok}


def strategy_pairs(scenarios: Sequence[ScenarioResult]) -> dict[str, list[Pair]]:
    """recreate vs reuse with the same capture and compile mode (compile once has one closure: left out)."""
    idx = _index(scenarios)
    out: dict[str, list[Pair]] = {}
    for (s, c, m), rec in idx.items():
        if s != "recreate" or m == "once":
            continue
        other = idx.get(("reuse", c, m))
        if other is not None:
            out.setdefault(f"capture {c}, compile {m}", []).append(Pair(rec, other, f"capture {c}, compile {m}"))
    return out


def compile_pairs(scenarios: Sequence[ScenarioResult]) -> dict[str, list[Pair]]:
    """compile every cycle vs compile once, same capture; the every-cycle side is the closest match available:
    the same optimizer instance and one closure first (they differ from compile once in compile() alone)."""
    idx = _index(scenarios)
    out: dict[str, list[Pair]] = {}
    prefs = [("reuse", "same-optimizer"), ("recreate", "same-optimizer"), ("reuse", "new-optimizer"),
             ("recreate", "new-optimizer")]
    for (_s, c, m), once in idx.items():
        if m != "once":
            continue
        for strategy, mode in prefs:
            every = idx.get((strategy, c, mode))
            if every is not None:
                setting = f"capture {c}, {strategy}, {mode} vs once"
                out.setdefault(f"capture {c}", []).append(Pair(every, once, setting))
                break
    return out


def optimizer_pairs(scenarios: Sequence[ScenarioResult]) -> dict[str, list[Pair]]:
    """A new string optimizer per compile vs one optimizer instance, same strategy and capture."""
    idx = _index(scenarios)
    out: dict[str, list[Pair]] = {}
    for (s, c, m), new in idx.items():
        if m != "new-optimizer":
            continue
        same = idx.get((s, c, "same-optimizer"))
        if same is not None:
            out.setdefault(f"{s}, capture {c}", []).append(Pair(new, same, f"{s}, capture {c}"))
    return out


def capture_pairs(scenarios: Sequence[ScenarioResult], baseline: str = "scalar") -> dict[str, list[Pair]]:
    """Each capture kind vs ``baseline``, same strategy and compile mode; keyed by the capture kind."""
    idx = _index(scenarios)
    out: dict[str, list[Pair]] = {}
    for (s, c, m), sc in idx.items():
        if c == baseline:
            continue
        base = idx.get((s, baseline, m))
        if base is not None:
            out.setdefault(c, []).append(Pair(sc, base, f"{s}, compile {m}"))
    return out


def comparisons(scenarios: Sequence[ScenarioResult]) -> list[Comparison]:
    """Every factor on every metric: per setting, then pooled over the settings (``setting='pooled'``)."""
    out: list[Comparison] = []
    factors: list[tuple[Factor, str, str, dict[str, list[Pair]]]] = [
        ("strategy", "recreate", "reuse", strategy_pairs(scenarios)),
        ("compile", "every cycle", "once", compile_pairs(scenarios)),
        ("optimizer", "new-optimizer", "same-optimizer", optimizer_pairs(scenarios)),
    ]
    for factor, a, b, groups in factors:
        for metric in METRICS:
            per = [compare_pair(factor, metric, a, b, key, pairs) for key, pairs in groups.items()]
            out.extend(c for c in per if c is not None)
            pooled = compare_pair(factor, metric, a, b, "pooled", [p for ps in groups.values() for p in ps])
            if pooled is not None and len(groups) > 1:
                out.append(pooled)
    for kind, pairs in capture_pairs(scenarios).items():
        for metric in METRICS:
            c = compare_pair("capture", metric, kind, "scalar", "pooled", pairs)
            if c is not None:
                out.append(c)
    return out


def pooled(cs: Sequence[Comparison], factor: str, metric: str) -> Comparison | None:
    """The pooled comparison, or the only per-setting one when there is a single setting."""
    mine = [c for c in cs if c.factor == factor and c.metric == metric]
    pooled = [c for c in mine if c.setting == "pooled"]
    if pooled:
        return pooled[0]
    return mine[0] if len(mine) == 1 else None


def settings(cs: Sequence[Comparison], factor: str, metric: str) -> list[Comparison]:
    """The per-setting comparisons of ``factor`` on ``metric`` (the pooled one left out)."""
    return [c for c in cs if c.factor == factor and c.metric == metric and c.setting != "pooled"]


def summary(cs: Sequence[Comparison]) -> str:
    """One line for a page's heading: which factors move memory (RSS) and which do not."""
    labels = {"compile": "compiling every cycle", "strategy": "recreating the closure",
              "optimizer": "a new optimizer per compile"}
    moves: list[str] = []
    graphs_only: list[str] = []
    still: list[str] = []

    def judge(label: str, rss: Sequence[Comparison], graphs: Sequence[Comparison]) -> None:
        if not rss:
            return
        if any(c.moves for c in rss):
            moves.append(label)
        elif any(c.moves for c in graphs):
            graphs_only.append(label)
        else:
            still.append(label)

    for factor in ("compile", "strategy", "optimizer"):
        judge(labels[factor], settings(cs, factor, RSS), settings(cs, factor, GRAPHS))
    for c in cs:
        if c.factor == "capture" and c.metric == RSS:
            judge(f"a {c.a} capture", [c], [g for g in cs if g.factor == "capture" and g.metric == GRAPHS
                                            and g.a == c.a])
    if not (moves or graphs_only or still):
        return "Nothing to compare: too few scenarios or cycles."
    parts = []
    if moves:
        parts.append(f"Moves memory: {join(moves)}.")
    if graphs_only:
        parts.append(f"Grows live TF graphs, RSS within the noise: {join(graphs_only)}.")
    if still:
        parts.append(f"Does not move memory: {join(still)}.")
    return " ".join(parts)


def join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
