"""What every renderer of a ``compare`` report shows, as plain strings: the ranking rows, the save check, the
environment and the comparisons behind the conclusion. Markdown, HTML and the terminal lay these out."""

from __future__ import annotations

import math
from typing import Any

from closuretrace.renderers.format import fmt_ci, fmt_seconds, verdict_class, verdict_word
from closuretrace.session import CompareSession, Comparison, ScenarioResult
from closuretrace.units import fmt_rate, fmt_value

RSS = "rss_bytes"


def headline(session: CompareSession) -> str:
    n = len(session.scenarios)
    failed = sum(1 for s in session.scenarios if not s.ok)
    st = session.settings
    tail = f", {failed} failed" if failed else ""
    if session.run.outcome in ("interrupted", "terminated"):
        tail += f", {session.run.outcome}"
    return (
        f"closuretrace compare: {n} scenarios{tail}, {st.get('cycles', '?')} cycles each, "
        f"{fmt_seconds(session.run.duration_s)}"
    )


def _num(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _rate_of(s: ScenarioResult, metric: str) -> str:
    v = s.verdict(metric)
    return fmt_rate(v.slope_per_cycle, v.unit) if v is not None else "n/a"


def ranking_rows(session: CompareSession) -> list[dict[str, Any]]:
    """One row per scenario, steepest RSS growth first (failed scenarios last, with their error)."""
    rows = []
    for i, s in enumerate(session.ranked(), 1):
        rss = s.verdict(RSS)
        word = verdict_word(rss) if rss is not None else ("failed" if not s.ok else "n/a")
        if not s.ok:
            word = "failed"
        rows.append(
            {
                "rank": i,
                "name": s.name,
                "strategy": s.strategy,
                "capture": s.capture,
                "compile": s.compile,
                "ok": s.ok,
                "rss": fmt_value(rss.slope_per_cycle, rss.unit, True) if rss is not None else "n/a",
                "rss_ci": fmt_ci(rss) if rss is not None else "n/a",
                "rss_word": word,
                "rss_cls": "leak" if not s.ok else verdict_class(rss),
                "graphs": _rate_of(s, "tf_func_graphs").replace("/cycle", ""),
                "gc": _rate_of(s, "gc_objects").replace("/cycle", ""),
                "traces": _num(s.traces_per_cycle, 1),
                "closures": f"{s.closures_created} / {s.closures_alive_end}",
                "created": s.closures_created,
                "alive": s.closures_alive_end,
                "seconds": _num(s.seconds_per_cycle, 2),
                "split": f"{_num(s.compile_seconds_per_cycle, 3)} + {_num(s.fit_seconds_per_cycle, 2)}",
                "compile_s": _num(s.compile_seconds_per_cycle, 3),
                "fit_s": _num(s.fit_seconds_per_cycle, 2),
                "loss": _num(s.final_loss, 3),
                "accuracy": _num(s.final_accuracy, 3),
                "offset": _num(s.offset, 4),
                "pid": s.pid if s.pid is not None else "",
                "error": s.error or "",
            }
        )
    return rows


def comparison_rows(session: CompareSession) -> list[dict[str, Any]]:
    """The comparisons behind the conclusion, RSS first."""
    order = {"rss_bytes": 0, "tf_func_graphs": 1, "gc_objects": 2}
    cs = sorted(session.comparisons, key=lambda c: (order.get(c.metric, 9), _factor_rank(c), c.setting))
    return [_comparison_row(c) for c in cs]


def _factor_rank(c: Comparison) -> int:
    return {"compile": 0, "strategy": 1, "capture": 2, "optimizer": 3}.get(c.factor, 9)


def _comparison_row(c: Comparison) -> dict[str, Any]:
    return {
        "factor": c.factor,
        "metric": c.metric,
        "a": c.a,
        "b": c.b,
        "setting": f"{c.pairs} pairs pooled" if c.setting == "pooled" else c.setting,
        "a_slope": fmt_rate(c.a_slope, c.unit),
        "b_slope": fmt_rate(c.b_slope, c.unit),
        "difference": f"{fmt_value(c.difference, c.unit, True)} ± {fmt_value(c.half_width, c.unit)}",
        "pairs": c.pairs,
        "moves": c.moves,
        "word": "moves" if c.moves else "no difference",
    }


def _yes(v: Any) -> str:
    return {True: "yes", False: "no", None: "n/a"}.get(v, str(v))


def save_rows(session: CompareSession) -> list[dict[str, str]]:
    """The save check: the closure loss (plain load, then with custom_objects) and the Loss subclass."""
    sc = session.save_check
    rows = []
    for key, label in (("closure", "closure outer_loss(value)"), ("loss_subclass", "keras.losses.Loss subclass")):
        case = sc.get(key)
        if not isinstance(case, dict):
            continue
        rows.append(
            {
                "case": label,
                "how": "load_model(path)",
                "saved": _yes(case.get("saved")),
                "loaded": _yes(case.get("loaded")),
                "value": _yes(case.get("value_preserved")),
                "loaded_value": _num(case.get("loaded_value"), 2) if case.get("loaded_value") is not None else "",
                "error": str(case.get("error") or ""),
            }
        )
        custom = case.get("custom_objects")
        if isinstance(custom, dict):
            passed = custom.get("passed")
            how = "load_model(path, custom_objects=...)"
            if isinstance(passed, dict) and passed:
                how = "load_model(path, custom_objects={" + ", ".join(
                    f"{k!r}: {v}" for k, v in passed.items()
                ) + "})"
            rows.append(
                {
                    "case": label,
                    "how": how,
                    "saved": _yes(case.get("saved")),
                    "loaded": _yes(custom.get("loaded")),
                    "value": _yes(custom.get("value_preserved")),
                    "loaded_value": _num(custom.get("loaded_value"), 2)
                    if custom.get("loaded_value") is not None else "",
                    "error": str(custom.get("error") or ""),
                }
            )
    return rows


def environment_rows(session: CompareSession) -> list[tuple[str, str]]:
    env = session.environment
    out: list[tuple[str, str]] = []
    versions = env.get("versions") or {}
    if versions:
        out.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    if env.get("graph_check_text"):
        out.append(("traced graphs", str(env["graph_check_text"])))
    if env.get("platform"):
        out.append(("platform", str(env["platform"])))
    return out


def settings_rows(session: CompareSession) -> list[tuple[str, str]]:
    st = session.settings
    out: list[tuple[str, str]] = []
    for key, label in (
        ("design", "design"),
        ("data", "data"),
        ("model", "model"),
        ("cycles", "cycles per scenario"),
        ("warmup", "warm-up cycles"),
        ("epochs", "epochs per fit"),
        ("samples", "samples"),
        ("batch_size", "batch size"),
        ("capture_mb", "array capture size (MB)"),
        ("capture_value", "captured value"),
        ("jobs", "processes at a time"),
        ("threads_per_job", "TensorFlow threads per process"),
    ):
        if key in st:
            out.append((label, str(st[key])))
    for key in ("strategies", "captures", "compiles"):
        d = st.get(key)
        if isinstance(d, dict):
            out.extend((f"{key[:-1] if key != 'strategies' else 'strategy'} {k}", str(v)) for k, v in d.items())
    return out
