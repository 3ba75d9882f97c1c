"""The conclusion of ``closuretrace compare``, drawn from the measured slopes alone.

Sentences are built from the comparisons (:mod:`closuretrace.experiment.factors`) and the scenarios' own
readings, most telling first; a sentence only says a factor moves memory when its comparison says so, and gives
the bound otherwise. Change the library and the sentences change with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from closuretrace.analysis.pairs import RSS, pair_slope, ranking
from closuretrace.analysis.verdicts import MIN_CYCLES
from closuretrace.experiment import factors, savecheck
from closuretrace.experiment.factors import GRAPHS, comparisons, join, summary
from closuretrace.session import CompareSession, Comparison, ScenarioResult
from closuretrace.units import fmt_bytes, fmt_rate, fmt_value

#: What each capture kind is, in a sentence.
_NOUN = {"scalar": "Python number", "numpy": "NumPy array", "tensor": "TensorFlow tensor", "variable": "keras.Variable"}
#: |offset - captured value| below this counts as "the value reaches the loss" (float32 arithmetic).
OFFSET_TOLERANCE = 0.01


def _rate(v: float, unit: str) -> str:
    return fmt_rate(v, unit)


def _pm(c: Comparison) -> str:
    return f"{fmt_value(c.difference, c.unit, True)} ± {fmt_value(c.half_width, c.unit)}"


def strategy_sentences(cs: Sequence[Comparison], scenarios: Sequence[ScenarioResult]) -> list[str]:
    per = factors.settings(cs, "strategy", RSS)
    pooled = factors.pooled(cs, "strategy", RSS)
    if not per or pooled is None:
        return []
    recreated = [s for s in scenarios if s.ok and s.strategy == "recreate" and s.compile != "once"]
    freed = ""
    if recreated:
        made = max(s.closures_created for s in recreated)
        alive = max(s.closures_alive_end for s in recreated)
        freed = (
            f" The closures themselves are freed: a recreate run made up to {made} closures and at most {alive} "
            f"{'was' if alive == 1 else 'were'} alive at its end."
        )
    moved = [c for c in per if c.moves]
    if not moved:
        where = f"in all {len(per)} settings compared" if len(per) > 2 else (
            "in both settings compared" if len(per) == 2 else f"({per[0].setting})"
        )
        example = next((c for c in per if "scalar" in c.setting and "same-optimizer" in c.setting), per[0])
        return [
            f"Recreating the closure does not move memory: {where}, recreate and reuse grow RSS alike within the "
            f"95% CIs (mean difference {_pm(pooled)} per cycle; with {example.setting}: "
            f"{_rate(example.a_slope, example.unit)} vs {_rate(example.b_slope, example.unit)})." + freed
        ]
    parts = [
        f"{c.setting}: recreate {_rate(c.a_slope, c.unit)} vs reuse {_rate(c.b_slope, c.unit)} ({_pm(c)})"
        for c in moved
    ]
    rest = len(per) - len(moved)
    tail = ""
    if rest:
        tail = f" In the other {rest} setting{'s' if rest != 1 else ''} it makes no difference within the CIs."
    return [f"Recreating the closure moves memory with {'; '.join(parts)}." + tail + freed]


def compile_sentences(cs: Sequence[Comparison], scenarios: Sequence[ScenarioResult]) -> list[str]:
    rss = factors.pooled(cs, "compile", RSS)
    if rss is None:
        return []
    graphs = factors.pooled(cs, "compile", GRAPHS)
    every = [s for s in scenarios if s.ok and s.compile != "once"]
    once = [s for s in scenarios if s.ok and s.compile == "once"]
    t_every = _mean([s.traces_per_cycle for s in every])
    t_once = _mean([s.traces_per_cycle for s in once])

    def side(slope: float, g: float | None, traces: float | None) -> str:
        text = f"RSS {_rate(slope, rss.unit)}"
        if g is not None:
            text += f", TF FuncGraphs {_rate(g, 'graphs')}"
        if traces is not None:
            text += f", {fmt_value(traces, '')} new train-function traces per cycle"
        return text

    a = side(rss.a_slope, graphs.a_slope if graphs else None, t_every)
    b = side(rss.b_slope, graphs.b_slope if graphs else None, t_once)
    graph_moves = graphs is not None and graphs.moves
    if rss.moves or graph_moves:
        what = "memory" if rss.moves else "the number of live TF graphs (RSS within the noise)"
        return [
            f"Compiling every cycle moves {what}: compile before every fit gives {a}; compile once and fit every "
            f"cycle gives {b} (RSS difference {_pm(rss)} per cycle, 95%)."
        ]
    return [
        f"Compiling every cycle does not move memory measurably: compile before every fit gives {a}; compile "
        f"once gives {b} (RSS difference {_pm(rss)} per cycle, 95%)."
    ]


def optimizer_sentences(cs: Sequence[Comparison]) -> list[str]:
    c = factors.pooled(cs, "optimizer", RSS)
    if c is None:
        return []
    if c.moves:
        verb = "adds" if c.difference > 0 else "saves"
        return [
            f"A new optimizer per compile (optimizer='adam') {verb} {fmt_value(abs(c.difference), c.unit)} ± "
            f"{fmt_value(c.half_width, c.unit)} RSS per cycle against one reused Adam instance "
            f"({_rate(c.a_slope, c.unit)} vs {_rate(c.b_slope, c.unit)})."
        ]
    return [
        "A new optimizer per compile (optimizer='adam') makes no measurable difference against one reused Adam "
        f"instance ({_rate(c.a_slope, c.unit)} vs {_rate(c.b_slope, c.unit)}, difference {_pm(c)} per cycle)."
    ]


def capture_sentences(cs: Sequence[Comparison], scenarios: Sequence[ScenarioResult]) -> list[str]:
    per_kind = [c for c in cs if c.factor == "capture" and c.metric == RSS]
    if not per_kind:
        return []
    sizes = {s.capture: s.capture_nbytes for s in scenarios if s.ok and s.capture_nbytes}
    moved = [c for c in per_kind if c.moves]
    still = [c.a for c in per_kind if not c.moves]

    def size(kind: str) -> str:
        n = sizes.get(kind)
        return f"{n / 1e6:g} MB " if n else ""

    if not moved:
        return [
            f"What the closure captures does not move memory here: {', '.join(size(k) + k for k in still)} "
            "captures grow RSS like the scalar, within the CIs "
            f"({'; '.join(f'{c.a} {_pm(c)}' for c in per_kind)} per cycle against the scalar)."
        ]
    parts = []
    for c in moved:
        n = sizes.get(c.a)
        copies = f", about {c.difference / n:.1f}x its size per cycle" if n and c.difference > 0 else ""
        parts.append(
            f"a {size(c.a)}{c.a} capture grows RSS {_rate(c.a_slope, c.unit)} against {_rate(c.b_slope, c.unit)} "
            f"for the scalar ({_pm(c)}{copies})"
        )
    text = f"What the closure captures moves memory: {'; '.join(parts)}."
    if still:
        text += f" {join(still).capitalize()} of the same size {'does' if len(still) == 1 else 'do'} not differ "
        text += "from the scalar within the CIs."
    return [text]


def advice_sentence(cs: Sequence[Comparison]) -> list[str]:
    todo: list[str] = []
    comp = factors.pooled(cs, "compile", RSS)
    comp_g = factors.pooled(cs, "compile", GRAPHS)
    if comp is not None and ((comp.moves and comp.difference > 0) or (comp_g is not None and comp_g.moves
                                                                       and comp_g.difference > 0)):
        todo.append(
            "compile once and call fit() repeatedly; where every trial needs its own compile, run each trial in "
            "its own process (as compare does), so what it leaves behind goes with the process"
        )
    caps = [c for c in cs if c.factor == "capture" and c.metric == RSS]
    bad = [c.a for c in caps if c.moves and c.difference > 0]
    fine = [c.a for c in caps if not c.moves]
    if bad:
        if fine:
            todo.append(
                f"capture large values as a {' or '.join(_NOUN.get(k, k) for k in fine)} made once, not as a "
                f"{' or '.join(_NOUN.get(k, k) for k in bad)}"
            )
        else:
            todo.append(
                f"keep large values ({', '.join(_NOUN.get(k, k) for k in bad)}) out of what the loss closure captures"
            )
    opt = factors.pooled(cs, "optimizer", RSS)
    if opt is not None and opt.moves and opt.difference > 0:
        todo.append("pass one optimizer instance to every compile() of the same model instead of a string")
    strat = factors.settings(cs, "strategy", RSS)
    if strat and not any(c.moves for c in strat):
        todo.append("recreating outer_loss(...) before each compile can stay: it is not what grows")
    elif any(c.moves and c.difference > 0 for c in strat):
        todo.append("make the loss closure once where recreating it grew memory")
    if not todo:
        return []
    return [f"What to do: {'; '.join(todo)}."]


def extremes_sentence(scenarios: Sequence[ScenarioResult]) -> list[str]:
    ranked = [s for s in ranking(scenarios) if s.ok and pair_slope(s, RSS) is not None]
    if len(ranked) < 2:
        return []
    top, bottom = ranked[0], ranked[-1]
    ts, bs = pair_slope(top, RSS), pair_slope(bottom, RSS)
    assert ts is not None and bs is not None
    return [
        f"Steepest RSS growth: {top.name} at {_rate(ts[0], 'bytes')} (± {fmt_bytes(ts[1])}); flattest: "
        f"{bottom.name} at {_rate(bs[0], 'bytes')} (± {fmt_bytes(bs[1])})."
    ]


def roots_sentence(scenarios: Sequence[ScenarioResult]) -> list[str]:
    """Where the profiler's retention chains end, over the scenarios that leak."""
    leaking = [s for s in scenarios if s.ok and any(v.leak for v in s.verdicts)]
    if not leaking:
        return []
    roots: dict[str, int] = {}
    for s in leaking:
        for r in s.retention_roots:
            roots[r] = roots.get(r, 0) + 1
    if not roots:
        return [
            f"The profiler found no chain of references from a module global to the growth in the {len(leaking)} "
            "leaking scenario(s)."
        ]
    parts = [f"{root} ({n} of {len(leaking)})" for root, n in sorted(roots.items(), key=lambda kv: -kv[1])]
    return [
        "What keeps the growth alive, by the profiler's retention chains in the leaking scenarios: "
        f"{', '.join(parts)}."
    ]


def offset_sentence(scenarios: Sequence[ScenarioResult], value: float | None) -> list[str]:
    offsets = [(s, s.offset) for s in scenarios if s.ok and s.offset is not None]
    if not offsets or value is None:
        return []
    off = [o for _, o in offsets if o is not None]
    wrong = [s.name for s, o in offsets if o is not None and abs(o - value) > OFFSET_TOLERANCE]
    lo, hi = min(off), max(off)
    span = f"{lo:.4f}" if round(lo, 4) == round(hi, 4) else f"{lo:.4f} to {hi:.4f}"
    if not wrong:
        return [
            "The captured value really reaches the loss: in every scenario, the loss evaluate() reports for the "
            f"final model minus the plain cross-entropy of its predictions is {span} (captured: {value:g})."
        ]
    return [
        f"The loss minus the plain cross-entropy differs from the captured value {value:g} in "
        f"{', '.join(wrong)} (offsets {span})."
    ]


def environment_sentence(env: dict[str, Any]) -> list[str]:
    versions = env.get("versions") or {}
    tf, keras = versions.get("tensorflow"), versions.get("keras")
    check = env.get("graph_check")
    where = f"TensorFlow {tf}, Keras {keras}" if tf or keras else "the installed TensorFlow"
    if not isinstance(check, dict):
        return [f"Measured with {where}; the graph-lifetime check did not run."]
    if check.get("graphs_outlive_model"):
        return [
            f"Measured with {where}, in which traced graphs outlive their model "
            f"({check.get('graphs_alive_after_delete')} of {check.get('graphs_traced')} FuncGraphs alive after "
            "deleting it" + (", held by TensorFlow's gradient registry" if check.get("registry_holds_graphs") else "")
            + "): on a TensorFlow that frees them, the compile-every-cycle figures can differ, so rerun "
            "closuretrace compare there."
        ]
    return [
        f"Measured with {where}, in which traced graphs are freed with their model (checked by weak references): "
        "growth that remains here is not that leak."
    ]


def failures_sentence(scenarios: Sequence[ScenarioResult]) -> list[str]:
    stopped = [s.name for s in scenarios if not s.ok and str(s.error).startswith("interrupted")]
    failed = [s.name for s in scenarios if not s.ok and s.name not in stopped]
    out = []
    if failed:
        out.append(f"{len(failed)} scenario(s) failed and are left out of the comparisons: {', '.join(failed)}.")
    if stopped:
        out.append(f"{len(stopped)} scenario(s) were interrupted before they finished: {', '.join(stopped)}.")
    return out


def too_few_sentence(scenarios: Sequence[ScenarioResult]) -> list[str]:
    ok = [s for s in scenarios if s.ok]
    if ok and all(pair_slope(s, RSS) is None for s in ok):
        return [
            f"Too few cycles to fit a slope with a confidence interval ({MIN_CYCLES} measured cycles needed): run more."
        ]
    return []


def sentences_for(
    scenarios: Sequence[ScenarioResult],
    environment: dict[str, Any] | None = None,
    save_check: dict[str, Any] | None = None,
    capture_value: float | None = None,
) -> tuple[list[Comparison], list[str]]:
    """The comparisons and the conclusion's sentences, most telling first."""
    cs = comparisons(scenarios)
    parts: list[Callable[[], list[str]]] = [
        lambda: compile_sentences(cs, scenarios),
        lambda: roots_sentence(scenarios),
        lambda: strategy_sentences(cs, scenarios),
        lambda: capture_sentences(cs, scenarios),
        lambda: optimizer_sentences(cs),
        lambda: advice_sentence(cs),
        lambda: extremes_sentence(scenarios),
        lambda: offset_sentence(scenarios, capture_value),
        lambda: savecheck.sentences(save_check or {}),
        lambda: environment_sentence(environment or {}),
        lambda: failures_sentence(scenarios),
        lambda: too_few_sentence(scenarios),
    ]
    sentences: list[str] = []
    for part in parts:
        sentences.extend(part())
    return cs, sentences


def _mean(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None and math.isfinite(v)]
    return math.fsum(vs) / len(vs) if vs else None


def conclude(session: CompareSession, *, fresh: bool = True) -> CompareSession:
    """Judge a compare session: its comparisons, the conclusion's sentences, the one-line summary and the
    ranking (steepest RSS growth first). ``fresh=False`` (a file read back) keeps the conclusion it was written
    with and fills in only what a file from an older closuretrace lacks."""
    from closuretrace.analysis.verdicts import judge_verdicts

    for s in session.scenarios:
        judge_verdicts(s.verdicts)
    if fresh:
        value = session.settings.get("capture_value")
        session.comparisons, session.conclusion = sentences_for(
            session.scenarios,
            session.environment,
            session.save_check,
            float(value) if isinstance(value, (int, float)) else None,
        )
    if fresh or not session.summary:
        session.summary = summary(session.comparisons) if session.scenarios else "No scenario ran."
    if fresh or not session.ranking:
        session.ranking = [s.name for s in ranking(session.scenarios)]
    return session
