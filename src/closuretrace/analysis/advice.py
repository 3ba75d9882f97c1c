"""Advice: one or two sentences per finding, each grounded in a number the session measured.

Every rule reads only the session (so ``render`` of a saved session gives the same advice) and says nothing
that the measurements do not support: no rule fires on a pattern it merely recognises.
"""

from __future__ import annotations

from collections.abc import Callable

from closuretrace.analysis import frameworks
from closuretrace.analysis.loop import loop_shape
from closuretrace.analysis.verdicts import MIN_CYCLES, measured
from closuretrace.session import Session, Verdict
from closuretrace.units import fmt_bytes, fmt_value

BIG_CAPTURE = 1024 * 1024


def advise(session: Session) -> list[str]:
    """All advice for ``session``, most important first."""
    out: list[str] = []
    for rule in RULES:
        out.extend(rule(session))
    return out


def _verdict(session: Session, metric: str) -> Verdict | None:
    return session.verdict(metric)


def _chain_root(session: Session, metric: str) -> str | None:
    """The root of a chain shown to be a cause of ``metric``'s growth (a mere path is never advice)."""
    chain = next((c for c in session.retention if metric in c.metrics and c.is_cause), None)
    return chain.root if chain is not None else None


def _what_ran(session: Session) -> list[str]:
    """The loop driver, and frameworks the program imported that no hook covers (instead of "too few")."""
    out = [line for line in (frameworks.driver_line(session), frameworks.unhooked_note(session)) if line]
    return out


def _too_few_cycles(session: Session) -> list[str]:
    warmup = session.warmup
    n = len(measured(session.cycles, warmup))
    if n >= MIN_CYCLES or frameworks.unhooked_note(session):
        return []
    return [
        f"Only {n} cycle(s) were measured after the warm-up; a verdict needs at least {MIN_CYCLES}. End cycles with "
        "Keras fit(), --cycle-on FUNCTION, or `with profiler.cycle():`, and run more of them."
    ]


def _closure_churn(session: Session) -> list[str]:
    out = []
    alive = _verdict(session, "closures_alive")
    for factory, recs in session.factories().items():
        if len(recs) < 2:
            continue
        freed = sum(1 for r in recs if r.collected_cycle is not None)
        reused = sum(1 for r in recs if r.reused_id_of is not None)
        if freed >= len(recs) - 1 and not (alive and alive.leak):
            ids = f"; {reused} took the id of a freed one, which is why ids alternate" if reused else ""
            out.append(
                f"{factory}: {len(recs)} closures created and {freed} freed{ids}. Recreating this closure is "
                "not what grows memory; the old ones are collected."
            )
    return out


def _closures_kept(session: Session) -> list[str]:
    v = _verdict(session, "closures_alive")
    if v is None or not v.leak:
        return []
    used = measured(session.cycles, session.warmup)
    first, last = used[0].closures_alive_by_factory, used[-1].closures_alive_by_factory
    growing = sorted((f for f in last if last[f] > first.get(f, 0)), key=lambda f: first.get(f, 0) - last[f])
    who = ", ".join(growing[:3]) or "some factory"
    root = _chain_root(session, "closures_alive")
    held = f" They are held by {root}." if root else ""
    return [
        f"Closures from {who} stay alive ({fmt_value(v.slope_per_cycle, '', True)} per cycle).{held} "
        "Drop that reference when a cycle ends, or create the closure once and reuse it."
    ]


def _traces_kept(session: Session) -> list[str]:
    graphs = _verdict(session, "tf_func_graphs")
    fns = _verdict(session, "tf_functions")
    leaking = [v for v in (graphs, fns) if v is not None and v.leak]
    if not leaking:
        return []
    v = leaking[0]
    text = (
        f"Every cycle leaves traced TensorFlow graphs alive ({fmt_value(v.slope_per_cycle, '', True)} "
        f"{session.metric_info(v.metric).label} per cycle)."
    )
    root = _chain_root(session, v.metric) or _chain_root(session, "gc_objects")
    if root:
        text += f" The retention chain ends in {root}, a global the program does not clear."
    shape = loop_shape(session)
    if shape.recompiles_same_model:
        text += (
            " compile() ran again on the same model in every measured cycle, and each compile makes the next "
            "fit() trace a new train step: compile once and call fit() repeatedly, or run each trial in its own "
            "process."
        )
    elif shape.new_model_per_cycle:
        text += (
            f" Each measured cycle built and compiled a new model ({shape.new_model_cycles} of {shape.cycles}), "
            "so each fit() traces a new train step, and no setting of one process reuses a trace across "
            "models: run each trial in its own process (for example a multiprocessing pool with the 'spawn' "
            "start method and maxtasksperchild=1), so what a trial leaves behind is freed when its process ends."
        )
        d = frameworks.driver(session)
        if d is not None and d.via:
            text += (
                " With scikit-learn, n_jobs=2 or more in cross_val_score or GridSearchCV runs the folds in "
                "joblib's worker processes, so this process traces none of them."
            )
    else:
        text += " Run each trial in its own process, so what a trial leaves behind is freed when it ends."
    return [text]


def _optimizer_per_compile(session: Session) -> list[str]:
    rss = _verdict(session, "rss_bytes")
    if rss is None or not rss.leak:
        return []
    shape = loop_shape(session)
    how = shape.optimizer_per_compile
    # One optimizer instance serves only the model it was built for: with a new model per cycle it would raise.
    if how is None or not shape.recompiles_same_model:
        return []
    return [
        f"compile() was given {how} across {len(shape.optimizers)} compiles of the same model, so each compile "
        f"builds new optimizer variables while RSS grows {fmt_bytes(rss.slope_per_cycle, True)} per cycle; "
        "traces that stay alive keep those variables. Create one optimizer instance and pass it to every "
        "compile() of that model."
    ]


def _jax_caches(session: Session) -> list[str]:
    v = _verdict(session, "jax_cache_entries")
    if v is None or not v.leak:
        return []
    return [
        f"JAX's compilation caches gain {fmt_value(v.slope_per_cycle, '', True)} entries per cycle: each cycle "
        "jits a new function or calls one with a new input shape, and JAX keeps every compiled version. Keep "
        "shapes fixed (pad the last batch) and reuse jitted functions, or call jax.clear_caches() when a cycle "
        "ends if its compiled functions are not needed again."
    ]


def _big_captures(session: Session) -> list[str]:
    rss = _verdict(session, "rss_bytes")
    out = []
    seen: set[tuple[str, str]] = set()
    for rec in session.closures:
        for cap in rec.captures:
            if cap.nbytes is None or cap.nbytes < BIG_CAPTURE or (rec.factory, cap.name) in seen:
                continue
            seen.add((rec.factory, cap.name))
            text = f"{rec.factory} captures '{cap.name}', a {cap.type} of {fmt_bytes(cap.nbytes)}."
            if rss is not None and rss.leak and rss.slope_per_cycle >= 0.5 * cap.nbytes:
                text += (
                    f" RSS grows {fmt_bytes(rss.slope_per_cycle, True)} per cycle, about the size of that "
                    "capture or more: a traced function embeds a captured array as a constant, so each retrace "
                    "copies it. Pass it as a model input or a variable, or trace once."
                )
            out.append(text)
    return out


def _closure_losses_do_not_reload(session: Session) -> list[str]:
    kinds = {r.kind for r in session.closures if "loss" in r.roles}
    out = []
    if "closure" in kinds:
        out.append(
            "A closure passed as a Keras loss is saved in .keras by its name only: load_model() cannot "
            "rebuild it, and custom_objects would use whatever closure you pass then, not the captured value. "
            "Use a keras.losses.Loss subclass whose get_config() returns the extra values, registered with "
            "@keras.saving.register_keras_serializable()."
        )
    if "partial" in kinds:
        out.append("A functools.partial loss cannot be serialized by model.save(); use a Loss subclass.")
    if "lambda" in kinds:
        out.append("A lambda loss reloads only with safe_mode=False; use a named function or a Loss subclass.")
    return out


def _all_flat(session: Session) -> list[str]:
    if session.leaks() or len(measured(session.cycles, session.warmup)) < MIN_CYCLES:
        return []
    return ["No metric grows beyond its noise floor over the measured cycles: nothing here leaks per cycle."]


RULES: list[Callable[[Session], list[str]]] = [
    _what_ran,
    _too_few_cycles,
    _closures_kept,
    _traces_kept,
    _optimizer_per_compile,
    _jax_caches,
    _big_captures,
    _closure_churn,
    _closure_losses_do_not_reload,
    _all_flat,
]
