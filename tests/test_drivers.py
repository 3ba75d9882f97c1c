"""The loops users do not write themselves: KerasTuner trials, scikeras folds in scikit-learn, Optuna trials.

Each trial or fold is one cycle with no flag, labelled as the library numbers it; the report names the driver;
and every advice line given for such a loop is applied to that loop and run here: a line this test does not know
how to apply fails it, so no advice reaches users untried (one optimizer instance or "compile once" would raise
or not apply in a loop that builds a new model per trial, and must not be given).

Four trials or folds, not three: with one warm-up cycle, three measured cycles are the fewest a verdict needs.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import closuretrace
from closuretrace.analysis.loop import loop_shape
from closuretrace.session import Session
from support import require_module

pytestmark = [pytest.mark.tf, pytest.mark.slow]

N = 4


def _data(classes: int = 2) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 16), dtype=np.float32)
    labels = rng.integers(0, classes, 64)
    return x, labels


def outer_loss(offset: float) -> Any:
    """A closure loss, as in the seed."""
    import keras

    def loss_function(y_true: Any, y_pred: Any) -> Any:
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred) + offset

    return loss_function


def offset_loss(offset: float) -> Any:
    """The fix the save advice names: a registered Loss subclass whose config holds the offset."""
    import keras

    @keras.saving.register_keras_serializable(package="closuretrace_tests")
    class OffsetLoss(keras.losses.Loss):
        def __init__(self, offset: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.offset = offset

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred) + self.offset

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "offset": self.offset}

    return OffsetLoss(offset)


def build(units: int = 8, offset: float = 0.5, loss: Callable[[float], Any] = outer_loss) -> Any:
    import keras

    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile("adam", loss=loss(offset))
    return model


def _profile(loop: Callable[[], Any]) -> Session:
    with closuretrace.Profiler(closuretrace.ProfileOptions(warmup=1)) as prof:
        loop()
    assert prof.session is not None
    return prof.session


def _graphs_here() -> int:
    from closuretrace.probes.tensorflow import func_graph_count

    gc.collect()
    return func_graph_count(Counter(map(type, gc.get_objects()))) or 0


def trial_in_process(values: dict[str, Any]) -> float:
    """One trial (build + fit of one set of hyperparameters) in a fresh process: the process-per-trial advice."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    x, y = _data()
    model = build(int(values.get("units", 8)), float(values.get("offset", 0.5)))
    return float(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])


@functools.cache
def _one_process_per_trial() -> None:
    """The same trial in its own process for KerasTuner and scikeras: run once per test session."""
    before = _graphs_here()
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        (loss,) = pool.map(trial_in_process, [{"units": 8, "offset": 0.5}])
    assert loss == loss  # a number, not NaN: the trial ran
    assert _graphs_here() == before  # and left no graph in this process


def _loss_subclass_saves(tmp: Any) -> Callable[[], None]:
    def apply() -> None:
        import keras

        x, y = _data()
        model = build(loss=offset_loss)
        model.fit(x, y, epochs=1, verbose=0)
        path = os.path.join(str(tmp), "offset.keras")
        model.save(path)
        assert keras.models.load_model(path).loss.offset == 0.5

    return apply


def _apply_each(session: Session, changes: dict[str, Callable[[], None] | None]) -> None:
    """Run the change of every advice line; ``None`` marks a line that reports without asking for a change."""
    text = " ".join(session.advice)
    assert "compile once" not in text and "optimizer instance" not in text, session.advice
    for line in session.advice:
        keys = [k for k in changes if k in line]
        assert keys, f"advice this test cannot apply to its loop: {line}"
        for k in keys:
            change = changes[k]
            if change is not None:
                change()


REPORTS = {"Loop driven by": None, "Recreating this closure is not what grows memory": None}


def _check_new_model_loop(session: Session, driver: str, labels: list[str]) -> None:
    assert [c.label for c in session.cycles] == labels
    assert session.advice[0].startswith(f"Loop driven by {driver}"), session.advice
    shape = loop_shape(session)
    assert shape.driver is not None and shape.new_model_per_cycle and not shape.recompiles_same_model
    graphs = session.verdict("tf_func_graphs")
    assert graphs is not None and graphs.leak, session.verdicts


def test_keras_tuner_trials_are_cycles_and_its_advice_runs(tmp_path):
    kt = require_module("keras_tuner")
    require_module("tensorboard")  # keras-tuner 1.4.8 fails every trial without it on TF 2.21
    x, y = _data()

    def hypermodel(hp: Any) -> Any:
        return build(hp.Int("units", 4, 8, step=4), hp.Float("offset", 0.0, 1.0))

    def search(trials: int, executions: int, name: str) -> None:
        tuner = kt.RandomSearch(
            hypermodel, objective="loss", max_trials=trials, executions_per_trial=executions,
            directory=str(tmp_path), project_name=name, overwrite=True, seed=1,
        )
        tuner.search(x, y, epochs=1, verbose=0)

    session = _profile(lambda: search(N, 1, "one"))
    _check_new_model_loop(session, "KerasTuner", [f"trial {i}" for i in range(N)])
    compiles = [e for e in session.events if e.kind == "compile"]
    fits = [e for e in session.events if e.kind == "fit"]
    # The model built before the search (to learn the search space) compiles in the first cycle, never fits.
    assert len(fits) == N and len(compiles) == N + 1 and compiles[0].cycle == compiles[1].cycle == 0
    assert "KerasTuner" in closuretrace.render_text(session)

    twice = _profile(lambda: search(2, 2, "two"))
    assert [c.label for c in twice.cycles] == ["trial 0", "trial 1"]  # two fits per trial, one cycle
    assert sum(1 for e in twice.events if e.kind == "fit") == 4

    _apply_each(session, {
        **REPORTS,
        "run each trial in its own process": _one_process_per_trial,
        "keras.losses.Loss subclass": _loss_subclass_saves(tmp_path),
    })


def test_scikeras_folds_are_cycles_and_its_advice_runs(tmp_path):
    wrappers = require_module("scikeras.wrappers")
    from sklearn.model_selection import GridSearchCV, cross_val_score

    x, y = _data()

    def folds() -> None:
        scores = cross_val_score(wrappers.KerasClassifier(build, epochs=1, verbose=0), x, y, cv=N)
        assert len(scores) == N

    session = _profile(folds)
    _check_new_model_loop(session, "scikeras", [f"fold {i}" for i in range(1, N + 1)])
    assert "cross_val_score" in session.advice[0]

    def grid() -> None:
        search = GridSearchCV(
            wrappers.KerasClassifier(build, epochs=1, verbose=0, batch_size=16), {"batch_size": [16, 32]}, cv=2
        )
        search.fit(x, y)

    labels = [c.label for c in _profile(grid).cycles]
    assert labels == [f"candidate {c}/2 fold {f}/2" for c in (1, 2) for f in (1, 2)] + ["refit"]

    def worker_processes() -> None:  # the scikit-learn form of the advice: n_jobs
        before = _graphs_here()
        scores = cross_val_score(wrappers.KerasClassifier(build, epochs=1, verbose=0), x, y, cv=2, n_jobs=2)
        assert len(scores) == 2
        assert _graphs_here() == before

    _apply_each(session, {
        **REPORTS,
        "run each trial in its own process": _one_process_per_trial,
        "n_jobs=2 or more": worker_processes,
        "keras.losses.Loss subclass": _loss_subclass_saves(tmp_path),
    })


def test_optuna_trials_are_cycles_and_its_advice_runs(tmp_path):
    optuna = require_module("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = _data()

    def objective(trial: Any) -> float:
        model = build(trial.suggest_int("units", 4, 8, step=4), trial.suggest_float("offset", 0.0, 1.0))
        return float(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])

    session = _profile(lambda: optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).optimize(
        objective, n_trials=N
    ))
    _check_new_model_loop(session, "Optuna", [f"trial {i}" for i in range(N)])

    def process_per_trial() -> None:  # the objective sends its trial to a fresh process
        before = _graphs_here()
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            def in_process(trial: Any) -> float:
                values = {"units": trial.suggest_int("units", 4, 8, step=4), "offset": 0.5}
                return float(pool.apply(trial_in_process, (values,)))

            study = optuna.create_study()
            study.optimize(in_process, n_trials=1)
        assert len(study.trials) == 1 and study.trials[0].value is not None
        assert _graphs_here() == before

    _apply_each(session, {
        **REPORTS,
        "run each trial in its own process": process_per_trial,
        "keras.losses.Loss subclass": _loss_subclass_saves(tmp_path),
    })
