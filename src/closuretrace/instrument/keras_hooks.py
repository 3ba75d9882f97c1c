"""Keras hooks: record what ``compile`` is given, and end a profiler cycle when ``fit`` returns.

Nothing here imports Keras or TensorFlow. :func:`install` asks to be called back once the profiled program
imports a Keras itself; only then are ``Model.compile`` and ``Model.fit`` wrapped. Keras 3 (``keras``): the
wrappers are set on ``keras.Model`` (Keras 3 defines both on ``Trainer``/``TensorFlowTrainer`` further up the
MRO), so ``Sequential``, functional models and subclasses that do not override them all go through the hooks.
Keras 2 (``tf_keras``): on ``tf_keras.Model`` and on the V1 training class that ``ModelVersionSelector`` swaps in
outside eager mode (``tf_keras.src.engine.training_v1.Model``, which defines its own ``compile``/``fit``).

A loop driver (KerasTuner, scikeras in scikit-learn, Optuna; see :mod:`.drivers`) makes a trial or a fold one
cycle: inside such a unit ``fit`` records its event but does not end the cycle, the unit's end does.

What the hooks keep is weak or plain data: models and optimizers get a serial through a weak reference,
callables go to the closure registry (weak too), and events hold strings and numbers. Any failure of the
tool's own code is recorded as a ``hook_error`` event and the user's ``compile``/``fit`` runs as it would
without the tool.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from closuretrace.instrument import frameworks
from closuretrace.instrument.imports import when_imported
from closuretrace.instrument.keras_args import (
    WeakSerials,
    bound_arguments,
    describe_optimizer,
    iter_callables,
    strings_in,
)

__all__ = ["KERASES", "WeakSerials", "describe_optimizer", "install", "iter_callables"]

#: compile() arguments whose callables are recorded, with the role they get.
_WALKED = (("loss", "loss"), ("metrics", "metric"), ("weighted_metrics", "metric"))

#: The Kerases hooked: the module the program imports, and the model classes in it (``module:attribute``).
KERASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("keras", ("keras:Model",)),
    ("tf_keras", ("tf_keras:Model", "tf_keras.src.engine.training_v1:Model")),
)


class _Hooks:
    """The state of one installation: which profiler, the originals, the serials, the fit counter."""

    def __init__(self, profiler: Any) -> None:
        self.profiler: Any = profiler
        self.models = WeakSerials()
        self.optimizers = WeakSerials()
        self.fits = 0
        self.units = 0
        #: drivers whose ``driver`` event was recorded
        self.drivers: set[str] = set()
        self.local = threading.local()
        #: (owner class, attribute, original attribute as found, wrapper, whether owner had it in __dict__)
        self.patched: list[tuple[type, str, Any, Any, bool]] = []

    # -- helpers --------------------------------------------------------------------------------------------
    def depth(self, name: str) -> int:
        return int(getattr(self.local, name, 0))

    def set_depth(self, name: str, value: int) -> None:
        setattr(self.local, name, value)

    def model_desc(self, model: Any) -> str:
        n = self.models.serial(model)
        return f"{type(model).__name__} #{n if n is not None else '?'}"

    def error(self, where: str, exc: BaseException) -> None:
        prof = self.profiler
        if prof is None:
            return
        try:
            prof.record_event("hook_error", where=where, error=f"{type(exc).__name__}: {exc}"[:300])
        except Exception:
            pass

    # -- compile --------------------------------------------------------------------------------------------
    def before_compile(
        self, sig: inspect.Signature | None, model: Any, args: Any, kwargs: Any, api: str = "keras"
    ) -> None:
        prof = self.profiler
        if prof is None:
            return
        values = bound_arguments(sig, model, args, kwargs)
        if values is None:
            return  # compile() itself will report the bad call
        detail: dict[str, Any] = {"losses": [], "metrics": [], "keras": api}
        try:
            detail["loss_names"] = list(strings_in(values.get("loss")))
            detail["optimizer"] = describe_optimizer(values.get("optimizer"), self.optimizers)
            detail["model"] = self.model_desc(model)
            run_eagerly = values.get("run_eagerly")
            if isinstance(run_eagerly, bool):
                detail["run_eagerly"] = run_eagerly
        except Exception:
            pass
        found: list[tuple[Any, str]] = []
        seen: set[tuple[int, str]] = set()
        for arg, role in _WALKED:
            try:
                for fn in iter_callables(values.get(arg)):
                    if (id(fn), role) not in seen:
                        seen.add((id(fn), role))
                        found.append((fn, role))
                fn = None
            except Exception:
                continue
        # Drop our references to the top-level arguments so the refcount recorded is the program's.
        values.clear()
        held: dict[int, int] = {}
        for fn, _ in found:
            held[id(fn)] = held.get(id(fn), 0) + 1
        for fn, role in found:
            try:
                # References held here: the tuples in ``found`` (one per role) and the loop variable ``fn``.
                rec = prof.registry.register(fn, source="keras", role=role, tool_refs=held[id(fn)] + 1)
            except Exception:
                continue
            target = detail["losses"] if role == "loss" else detail["metrics"]
            if rec.serial not in target:
                target.append(rec.serial)
        fn = None
        found.clear()
        prof.record_event("compile", **detail)

    # -- fit ------------------------------------------------------------------------------------------------
    def after_fit(self, model: Any, new_train_function: bool | None, history: Any, api: str = "keras") -> None:
        prof = self.profiler
        if prof is None:
            return
        self.fits += 1
        n = self.fits
        detail: dict[str, Any] = {"n": n, "keras": api}
        try:
            detail["model"] = self.model_desc(model)
            params = getattr(history, "params", None)
            if isinstance(params, dict):
                for key in ("epochs", "steps"):
                    v = params.get(key)
                    if isinstance(v, int) and not isinstance(v, bool):
                        detail[key] = v
            epochs_run = getattr(history, "epoch", None)
            if isinstance(epochs_run, list):
                detail["epochs_run"] = len(epochs_run)
            if new_train_function is not None:
                detail["new_train_function"] = new_train_function
        except Exception:
            pass
        if self.depth("unit"):
            detail["in_unit"] = True  # a trial or fold of a driver: its end ends the cycle
            prof.record_event("fit", **detail)
            return
        prof.record_event("fit", **detail)
        prof.end_cycle(label=f"fit #{n}")

    # -- driver units (a trial, a fold) ---------------------------------------------------------------------
    def run_unit(
        self, driver: str, unit: str, call: Callable[[], Any], label: Callable[[Any], str | None], **extra: Any
    ) -> Any:
        """Run ``call()`` as one unit of ``driver``: it ends one cycle, labelled ``label(result)``.

        A unit inside a unit (scikeras folds inside an Optuna trial) is part of the outer one. ``extra`` goes
        into the driver's event (e.g. ``via``: the scikit-learn function that drove scikeras).
        """
        if self.profiler is None or self.depth("unit"):
            return call()
        try:
            self.note_driver(driver, unit, **extra)
        except Exception as exc:
            self.error(f"driver {driver}", exc)
        self.set_depth("unit", 1)
        result: Any = None
        try:
            result = call()
            return result
        finally:
            self.set_depth("unit", 0)
            self.end_unit(unit, label, result)

    def note_driver(self, driver: str, unit: str, **extra: Any) -> None:
        prof = self.profiler
        if prof is None or driver in self.drivers:
            return
        self.drivers.add(driver)
        detail: dict[str, Any] = {"name": driver, "unit": unit}
        detail.update((k, v) for k, v in extra.items() if isinstance(v, str))
        version = frameworks.version_of(driver)
        if version:
            detail["version"] = version
        prof.record_event("driver", **detail)

    def end_unit(self, unit: str, label: Callable[[Any], str | None], result: Any) -> None:
        prof = self.profiler
        if prof is None:
            return
        self.units += 1
        text: str | None = None
        try:
            text = label(result)
        except Exception as exc:
            self.error(f"{unit} label", exc)
        prof.end_cycle(label=text or f"{unit} #{self.units}")

    # -- patching -------------------------------------------------------------------------------------------
    def patch(self, module: Any, attr: str = "Model", api: str = "keras") -> bool:
        """Wrap ``compile``/``fit`` of ``module.<attr>``; whether both are hooked now."""
        model_cls = getattr(module, attr, None)
        if not isinstance(model_cls, type) or self.profiler is None:
            return False
        ok = True
        for name, make in (("compile", self._wrap_compile), ("fit", self._wrap_fit)):
            ok = self.patch_attr(model_cls, name, functools.partial(make, api=api)) and ok
        return ok

    def patch_attr(self, owner: type, name: str, make: Callable[[Any], Any]) -> bool:
        """Set ``owner.name`` to ``make(original)`` (once), remembering how to undo it; whether it is hooked."""
        try:
            original = getattr(owner, name)
            if not callable(original):
                return False
            if getattr(owner.__dict__.get(name), "__closuretrace_hook__", None) is not None:
                return True
            had = name in owner.__dict__
            raw = owner.__dict__[name] if had else None
            wrapper = make(original)
            setattr(owner, name, wrapper)
            self.patched.append((owner, name, raw, wrapper, had))
            return True
        except Exception as exc:
            self.error(f"patch {getattr(owner, '__name__', owner)}.{name}", exc)
            return False

    def unpatch(self) -> None:
        for owner, name, raw, wrapper, had in reversed(self.patched):
            try:
                if owner.__dict__.get(name) is not wrapper:
                    continue  # someone wrapped us in turn: leave theirs; ours forwards from now on
                if had:
                    setattr(owner, name, raw)
                else:
                    delattr(owner, name)
            except Exception:
                pass
        self.patched.clear()
        self.profiler = None
        self.models.clear()
        self.optimizers.clear()

    def _wrap_compile(self, original: Callable[..., Any], api: str = "keras") -> Callable[..., Any]:
        try:
            sig: inspect.Signature | None = inspect.signature(original)
        except (TypeError, ValueError):
            sig = None
        hooks = self

        @functools.wraps(original)
        def compile(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = hooks.depth("compile")
            if depth == 0 and hooks.profiler is not None:
                try:
                    hooks.before_compile(sig, self, args, kwargs, api)
                except Exception as exc:
                    hooks.error("compile", exc)
            hooks.set_depth("compile", depth + 1)
            try:
                return original(self, *args, **kwargs)
            finally:
                hooks.set_depth("compile", depth)

        compile.__closuretrace_hook__ = "compile"  # type: ignore[attr-defined]
        return compile

    def _wrap_fit(self, original: Callable[..., Any], api: str = "keras") -> Callable[..., Any]:
        hooks = self

        @functools.wraps(original)
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = hooks.depth("fit")
            new_fn: bool | None = None
            if depth == 0 and hooks.profiler is not None:
                try:
                    # compile() resets train_function to None, so the coming fit traces a new train step.
                    new_fn = getattr(self, "train_function", None) is None
                except Exception:
                    new_fn = None
            hooks.set_depth("fit", depth + 1)
            try:
                history = original(self, *args, **kwargs)
            finally:
                hooks.set_depth("fit", depth)
            if depth == 0 and hooks.profiler is not None:
                try:
                    hooks.after_fit(self, new_fn, history, api)
                except Exception as exc:
                    hooks.error("fit", exc)
            return history

        fit.__closuretrace_hook__ = "fit"  # type: ignore[attr-defined]
        return fit


def install(profiler: Any) -> Callable[[], None]:
    """Hook ``compile``/``fit`` of every Keras in :data:`KERASES` (and the loop drivers) for ``profiler``, each
    once the program imports it.

    Returns the function that removes the hooks (or cancels the pending import callbacks) and restores the
    classes exactly as they were; before that it records a ``framework`` event for each framework the program
    imported that nothing here hooks (see :mod:`.frameworks`).
    """
    from closuretrace.instrument import drivers

    hooks = _Hooks(profiler)
    cancels: list[Callable[[], None]] = []
    for top, targets in KERASES:
        cancels.append(when_imported(top, functools.partial(_on_keras, hooks, top, targets, cancels)))
    cancels.extend(drivers.install(hooks))

    def remove() -> None:
        try:
            for cancel in cancels:
                cancel()
            if hooks.profiler is not None:
                frameworks.record_unhooked(hooks.profiler)
        finally:
            hooks.unpatch()

    return remove


def _on_keras(
    hooks: _Hooks, top: str, targets: tuple[str, ...], cancels: list[Callable[[], None]], module: Any
) -> None:
    """The program imported ``top``: hook its model classes (those in submodules once they are imported too)."""
    # Runs inside the program's import: it must never raise there.
    api = frameworks.keras_api(top, module)
    hooked: list[bool] = []

    def patch_one(attr: str, mod: Any) -> None:
        try:
            hooked.append(hooks.patch(mod, attr, api))
        except Exception as exc:
            hooks.error(f"patch {top}", exc)
            hooked.append(False)

    for target in targets:
        mod_name, _, attr = target.partition(":")
        try:
            if mod_name == top:
                patch_one(attr, module)
            else:
                cancels.append(when_imported(mod_name, functools.partial(patch_one, attr)))
        except Exception as exc:
            hooks.error(f"patch {target}", exc)
    frameworks.record_framework(hooks.profiler, top, module, hooked=all(hooked) and bool(hooked), keras=api)
