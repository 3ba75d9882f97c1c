"""Loop drivers: the libraries that run compile+fit for the user, whose trial or fold is one cycle.

* **KerasTuner**: each trial (``BaseTuner._try_run_and_update_trial``, every tuner's search goes through it) is one
  cycle labelled ``trial <id>``, however many fits it runs (``executions_per_trial``); the models the tuner builds
  before searching (to learn the search space) compile but do not fit, so they end no cycle.
* **scikeras**: each ``fit`` of a wrapper is one cycle; inside scikit-learn (``cross_val_score``, ``GridSearchCV``,
  run in this process) it is labelled with the fold (and the candidate) where scikit-learn exposes them, else
  numbered per ``cross_validate`` call; ``GridSearchCV``'s final fit is ``refit``.
* **Optuna**: each call of the objective given to ``Study.optimize`` is one cycle labelled ``trial <number>``.

The first unit of a driver records a ``driver`` event (``name``, ``unit``, ``version``, and ``via`` for the
scikit-learn function that drove scikeras). Nothing here imports these libraries: the hooks are set when the
program imports them. Folds that scikit-learn runs in worker processes (``n_jobs`` > 1) are not seen here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from closuretrace.instrument.imports import when_imported

#: Frames looked through for scikit-learn's fold (a scikeras fit is a few calls below ``_fit_and_score``).
_MAX_FRAMES = 40


def install(hooks: Any) -> list[Callable[[], None]]:
    """Hook the drivers once the program imports them; the functions that cancel the pending callbacks."""
    targets: list[tuple[str, Callable[[Any], None]]] = [
        ("keras_tuner.src.engine.base_tuner", functools.partial(_keras_tuner, hooks)),
        ("scikeras.wrappers", functools.partial(_scikeras, hooks)),
        ("optuna.study.study", functools.partial(_optuna, hooks)),
    ]
    cancels = []
    for module, patch in targets:
        cancels.append(when_imported(module, functools.partial(_guarded, hooks, module, patch)))
    return cancels


def _guarded(hooks: Any, name: str, patch: Callable[[Any], None], module: Any) -> None:
    # Runs inside the program's import: never raises there.
    try:
        patch(module)
    except Exception as exc:
        hooks.error(f"driver {name}", exc)


def _mark(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__closuretrace_hook__ = name  # type: ignore[attr-defined]
    return fn


# -- KerasTuner ---------------------------------------------------------------------------------------------


def _keras_tuner(hooks: Any, module: Any) -> None:
    owner = getattr(module, "BaseTuner", None)
    if not isinstance(owner, type):
        return

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def _try_run_and_update_trial(self: Any, trial: Any, *args: Any, **kwargs: Any) -> Any:
            return hooks.run_unit(
                "keras_tuner",
                "trial",
                lambda: original(self, trial, *args, **kwargs),
                lambda _result: f"trial {getattr(trial, 'trial_id', '?')}",
            )

        return _mark(_try_run_and_update_trial, "keras_tuner trial")

    hooks.patch_attr(owner, "_try_run_and_update_trial", make)


# -- scikeras (inside scikit-learn) ---------------------------------------------------------------------------


class _FoldCounter:
    """Numbers the folds of one scikit-learn call that does not say which fold it runs (``cross_validate``)."""

    def __init__(self) -> None:
        self.key: tuple[int, str] | None = None
        self.n = 0

    def next(self, key: tuple[int, str]) -> int:
        if key != self.key:
            self.key, self.n = key, 0
        self.n += 1
        return self.n


#: scikit-learn's decorator frames, never the entry point the user called.
_WRAPPERS = frozenset({"wrapper", "wrapped", "inner_f", "__call__"})


def sklearn_context(counter: _FoldCounter, start: int = 2) -> tuple[str | None, str | None]:
    """``(via, label)`` for a fit called from scikit-learn: the scikit-learn entry point the program called
    (``cross_val_score``, ``GridSearchCV.fit``) and the fold label; ``(None, None)`` outside scikit-learn."""
    frame: Any = sys._getframe(start)
    outer: tuple[int, str] | None = None
    split: Any = None
    candidate: Any = None
    in_fold = False
    try:
        for _ in range(_MAX_FRAMES):
            if frame is None:
                break
            if str(frame.f_globals.get("__name__", "")).startswith("sklearn."):
                name = frame.f_code.co_name
                if name == "_fit_and_score" and not in_fold:
                    in_fold = True
                    split = frame.f_locals.get("split_progress")
                    candidate = frame.f_locals.get("candidate_progress")
                if name not in _WRAPPERS and not name.startswith("_"):
                    owner = frame.f_locals.get("self") if name == "fit" else None
                    outer = (id(frame), f"{type(owner).__name__}.fit" if owner is not None else name)
            frame = frame.f_back
    finally:
        del frame
    if outer is None:
        return (None, None) if not in_fold else ("scikit-learn", None)
    via = outer[1]
    if not in_fold:  # a search's final fit on all the data, or a fit scikit-learn does not number
        return via, "refit" if via.endswith("SearchCV.fit") else f"fit {counter.next(outer)}"
    fold = _progress(split)
    if fold is None:
        return via, f"fold {counter.next(outer)}"
    cand = _progress(candidate)
    return via, f"candidate {cand} fold {fold}" if cand else f"fold {fold}"


def _progress(value: Any) -> str | None:
    """``(i, n)`` (0-based, as scikit-learn passes it) as ``"i+1/n"``."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0] + 1}/{value[1]}"
    return None


def _scikeras(hooks: Any, module: Any) -> None:
    owner = getattr(module, "BaseWrapper", None)
    if not isinstance(owner, type):
        return
    counter = _FoldCounter()

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            if hooks.profiler is None or hooks.depth("unit"):
                return original(self, *args, **kwargs)
            via, label = None, None
            try:
                via, label = sklearn_context(counter)
            except Exception as exc:
                hooks.error("scikeras fold", exc)
            unit = "fold" if via else "fit"
            return hooks.run_unit(
                "scikeras", unit, lambda: original(self, *args, **kwargs), lambda _result: label, via=via
            )

        return _mark(fit, "scikeras fit")

    hooks.patch_attr(owner, "fit", make)


# -- Optuna ---------------------------------------------------------------------------------------------------


def _optuna(hooks: Any, module: Any) -> None:
    owner = getattr(module, "Study", None)
    if not isinstance(owner, type):
        return

    def objective_of(func: Any) -> Any:
        if not callable(func):
            return func  # optimize() reports the bad call itself

        @functools.wraps(func)
        def objective(trial: Any) -> Any:
            return hooks.run_unit(
                "optuna", "trial", lambda: func(trial), lambda _result: f"trial {getattr(trial, 'number', '?')}"
            )

        return objective

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def optimize(self: Any, *args: Any, **kwargs: Any) -> Any:
            if hooks.profiler is not None:
                if args:
                    args = (objective_of(args[0]), *args[1:])
                elif "func" in kwargs:
                    kwargs["func"] = objective_of(kwargs["func"])
            return original(self, *args, **kwargs)

        return _mark(optimize, "optuna optimize")

    hooks.patch_attr(owner, "optimize", make)
