"""Advice fits the loop it is given for: each rule on its own, and the Keras advice applied to real loops.

A rule that names a change must be shown to run in the loop it was given for: "compile once" and "one optimizer
instance" only for a loop that compiles the same model again; for a new model per cycle (a search, a fold),
where one optimizer instance raises, the advice is a process per trial, and the test runs that too.
"""

from __future__ import annotations

import multiprocessing
import os

import pytest

import closuretrace
from closuretrace.analysis import advice
from closuretrace.analysis.loop import loop_shape
from closuretrace.session import CycleSample, Event, RunInfo, Session, Verdict

needs_tf = pytest.mark.tf


def _verdict(metric: str, slope: float, leak: bool = True) -> Verdict:
    return Verdict(metric, "", slope, slope * 0.9, slope * 1.1, 6, 0.5, leak, state="leak" if leak else "flat")


def _session(compiles: list[tuple[int, str, str]], verdicts: list[Verdict], cycles: int = 7) -> Session:
    """A session whose events compile ``(cycle, model, optimizer)``; verdicts as given."""
    events = [Event(c, "compile", {"model": m, "optimizer": o}) for c, m, o in compiles]
    return Session(
        run=RunInfo(argv=["x"]),
        settings={"warmup": 1},
        cycles=[CycleSample(i, f"c{i}", 0.1, 0.0, {"rss_bytes": 0.0}) for i in range(cycles)],
        events=events,
        verdicts=verdicts,
    )


SAME_MODEL = [(i, "Functional #1", "string 'adam'") for i in range(7)]
NEW_MODEL = [(i, f"Functional #{i + 1}", "string 'adam'") for i in range(7)]
LEAKS = [_verdict("tf_func_graphs", 6.0), _verdict("rss_bytes", 4e6)]


def test_loop_shape_tells_a_recompiled_model_from_a_new_model_per_cycle():
    same, new = loop_shape(_session(SAME_MODEL, [])), loop_shape(_session(NEW_MODEL, []))
    assert (same.recompiles_same_model, same.new_model_per_cycle) == (True, False)
    assert (new.recompiles_same_model, new.new_model_per_cycle) == (False, True)
    assert same.recompiled_cycles == 6 and new.new_model_cycles == 6  # 6 measured cycles after 1 warm-up
    assert same.optimizer_per_compile == "a string optimizer"


def test_one_instance_of_one_optimizer_is_not_a_new_optimizer_per_compile():
    compiles = [(i, "Functional #1", "instance Adam #1") for i in range(7)]
    assert loop_shape(_session(compiles, [])).optimizer_per_compile is None
    two = [(i, "Functional #1", f"instance Adam #{i % 2 + 1}") for i in range(7)]
    assert loop_shape(_session(two, [])).optimizer_per_compile == "2 different optimizer instances"


def test_traces_rule_says_compile_once_only_when_the_same_model_is_recompiled():
    (same,) = advice._traces_kept(_session(SAME_MODEL, LEAKS))
    assert "compile once and call fit() repeatedly" in same
    (new,) = advice._traces_kept(_session(NEW_MODEL, LEAKS))
    assert "compile once" not in new
    assert "built and compiled a new model (6 of 6)" in new and "its own process" in new


def test_traces_rule_is_silent_without_a_trace_leak():
    assert advice._traces_kept(_session(SAME_MODEL, [_verdict("tf_func_graphs", 0.0, leak=False)])) == []


def test_optimizer_rule_only_for_the_same_model():
    (text,) = advice._optimizer_per_compile(_session(SAME_MODEL, LEAKS))
    assert "Create one optimizer instance" in text and "same model" in text
    assert advice._optimizer_per_compile(_session(NEW_MODEL, LEAKS)) == []


def test_optimizer_rule_needs_rss_growth():
    assert advice._optimizer_per_compile(_session(SAME_MODEL, [_verdict("tf_func_graphs", 6.0)])) == []


# -- the advice applied to real loops ---------------------------------------------------------------------


def _model(keras):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])


def _data():
    import numpy as np

    rng = np.random.default_rng(3)
    return rng.standard_normal((64, 16), dtype=np.float32), rng.standard_normal((64, 2), dtype=np.float32)


def _profile(loop, cycles: int = 5) -> Session:
    with closuretrace.Profiler(closuretrace.ProfileOptions(warmup=1)) as prof:
        loop(cycles)
    assert prof.session is not None
    return prof.session


def _graphs(session: Session) -> Verdict:
    v = session.verdict("tf_func_graphs")
    assert v is not None
    return v


@needs_tf
def test_same_model_loop_gets_both_changes_and_both_run(keras_mod):
    keras = keras_mod
    x, y = _data()

    def as_written(n):  # recompile one model with a string optimizer every cycle
        model = _model(keras)
        for _ in range(n):
            model.compile("adam", loss="mse")
            model.fit(x, y, epochs=1, verbose=0)

    session = _profile(as_written)
    text = " ".join(session.advice)
    assert _graphs(session).leak, session.verdicts
    assert "compile once and call fit() repeatedly" in text

    def one_instance(n):  # the optimizer advice, applied: it must run on this loop
        model, opt = _model(keras), keras.optimizers.Adam()
        for _ in range(n):
            model.compile(opt, loss="mse")
            model.fit(x, y, epochs=1, verbose=0)

    _profile(one_instance)

    def compiled_once(n):  # the compile-once advice, applied: no trace is left per cycle
        model = _model(keras)
        model.compile("adam", loss="mse")
        for _ in range(n):
            model.fit(x, y, epochs=1, verbose=0)

    fixed = _profile(compiled_once)
    assert not _graphs(fixed).leak and _graphs(fixed).slope_per_cycle == 0


def _trial(seed: int) -> float:
    """One trial of a search, run in its own process (module level, so 'spawn' can pickle it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    x, y = _data()
    model = _model(keras)
    model.compile("adam", loss="mse")
    return float(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])


@needs_tf
def test_new_model_loop_gets_only_advice_that_runs_there(keras_mod):
    keras = keras_mod
    x, y = _data()

    def search(n):  # a new model per trial, as KerasTuner, scikeras folds and Optuna trials do
        for _ in range(n):
            model = _model(keras)
            model.compile("adam", loss="mse")
            model.fit(x, y, epochs=1, verbose=0)

    session = _profile(search)
    text = " ".join(session.advice)
    assert _graphs(session).leak, session.verdicts
    assert "compile once" not in text and "optimizer instance" not in text
    assert "run each trial in its own process" in text

    # Why the optimizer advice is withheld here: the change it names raises in this loop.
    shared = keras.optimizers.Adam()
    first = _model(keras)
    first.compile(shared, loss="mse")
    first.fit(x, y, epochs=1, verbose=0)
    second = _model(keras)
    second.compile(shared, loss="mse")
    with pytest.raises(ValueError, match="optimizer"):
        second.fit(x, y, epochs=1, verbose=0)

    # The advice given, applied: each trial in a fresh 'spawn' process; the search runs and this process traces
    # nothing for it.
    import gc
    from collections import Counter

    from closuretrace.probes.tensorflow import func_graph_count

    def graphs_here() -> int:
        gc.collect()
        return func_graph_count(Counter(map(type, gc.get_objects()))) or 0

    before = graphs_here()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        losses = pool.map(_trial, range(2))
    assert len(losses) == 2 and all(loss == loss for loss in losses)
    assert graphs_here() == before
