"""Keras hooks: record what ``compile`` is given, and end a profiler cycle when ``fit`` returns.

Nothing here imports Keras or TensorFlow. :func:`install` asks to be called back once the profiled program
imports ``keras`` itself; only then are ``keras.Model.compile`` and ``keras.Model.fit`` wrapped. The wrappers
are set on ``keras.Model`` (Keras 3 defines both on ``Trainer``/``TensorFlowTrainer`` further up the MRO), so
``Sequential``, functional models and subclasses that do not override them all go through the hooks.

What the hooks keep is weak or plain data: models and optimizers get a serial through a weak reference,
callables go to the closure registry (weak too), and events hold strings and numbers. Any failure of the
tool's own code is recorded as a ``hook_error`` event and the user's ``compile``/``fit`` runs as it would
without the tool.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from closuretrace.instrument.imports import when_imported

#: Nested loss/metric structures deeper than this or with more leaves than this are not walked further.
_MAX_DEPTH = 16
_MAX_LEAVES = 1000

#: compile() arguments whose callables are recorded, with the role they get.
_WALKED = (("loss", "loss"), ("metrics", "metric"), ("weighted_metrics", "metric"))


class WeakSerials:
    """A stable serial per object, held through weak references: ``serial(obj)`` is the same for one object
    and never keeps it alive. Objects that cannot be weakly referenced get ``None``.

    Identity, not ``==``/``hash``: a model class with its own ``__eq__`` cannot confuse it.
    """

    def __init__(self) -> None:
        self._next = 1
        self._refs: dict[int, weakref.ref[Any]] = {}
        self._serials: dict[int, int] = {}

    def serial(self, obj: Any) -> int | None:
        oid = id(obj)
        ref = self._refs.get(oid)
        if ref is not None and ref() is obj:
            return self._serials[oid]
        try:
            ref = weakref.ref(obj, functools.partial(self._dead, oid))
        except TypeError:
            return None
        n = self._next
        self._next += 1
        self._refs[oid] = ref
        self._serials[oid] = n
        return n

    def _dead(self, oid: int, ref: weakref.ref[Any]) -> None:
        if self._refs.get(oid) is ref:
            del self._refs[oid]
            del self._serials[oid]

    def clear(self) -> None:
        self._refs.clear()
        self._serials.clear()


def iter_callables(structure: Any) -> Iterator[Any]:
    """Callables in a nested dict/list/tuple of losses or metrics; strings (Keras names) and ``None`` skipped.

    >>> import functools
    >>> [getattr(f, "__name__", "partial") for f in iter_callables({"a": [len, "mse", None], "b": (abs,)})]
    ['len', 'abs']
    """
    stack: list[tuple[Any, int]] = [(structure, 0)]
    leaves = 0
    while stack and leaves < _MAX_LEAVES:
        item, depth = stack.pop()
        if item is None or isinstance(item, (str, bytes)):
            continue
        if isinstance(item, dict):
            if depth < _MAX_DEPTH:
                stack.extend((v, depth + 1) for v in reversed(list(item.values())))
            continue
        if isinstance(item, (list, tuple)):
            if depth < _MAX_DEPTH:
                stack.extend((v, depth + 1) for v in reversed(item))
            continue
        leaves += 1
        if callable(item):
            yield item


def describe_optimizer(opt: Any, serials: WeakSerials) -> str:
    """``"string 'adam'"`` for a Keras name, ``"instance Adam #k"`` (k stable per instance) for an object."""
    if isinstance(opt, str):
        return f"string {opt!r}"
    if opt is None:
        return "none"
    if isinstance(opt, dict):
        return f"config {opt.get('class_name', '?')!s}"
    n = serials.serial(opt)
    return f"instance {type(opt).__name__} #{n if n is not None else '?'}"


class _Hooks:
    """The state of one installation: which profiler, the originals, the serials, the fit counter."""

    def __init__(self, profiler: Any) -> None:
        self.profiler: Any = profiler
        self.models = WeakSerials()
        self.optimizers = WeakSerials()
        self.fits = 0
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
    def before_compile(self, sig: inspect.Signature | None, model: Any, args: Any, kwargs: Any) -> None:
        prof = self.profiler
        if prof is None:
            return
        values = _arguments(sig, model, args, kwargs)
        if values is None:
            return  # compile() itself will report the bad call
        detail: dict[str, Any] = {"losses": [], "metrics": []}
        try:
            detail["loss_names"] = list(_strings(values.get("loss")))
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
    def after_fit(self, model: Any, new_train_function: bool | None, history: Any) -> None:
        prof = self.profiler
        if prof is None:
            return
        self.fits += 1
        n = self.fits
        detail: dict[str, Any] = {"n": n}
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
        prof.record_event("fit", **detail)
        prof.end_cycle(label=f"fit #{n}")

    # -- patching -------------------------------------------------------------------------------------------
    def patch(self, module: Any) -> None:
        model_cls = getattr(module, "Model", None)
        if not isinstance(model_cls, type) or self.profiler is None:
            return
        for name, make in (("compile", self._wrap_compile), ("fit", self._wrap_fit)):
            try:
                original = getattr(model_cls, name)
                if not callable(original) or getattr(original, "__closuretrace_hook__", None) is not None:
                    continue
                had = name in model_cls.__dict__
                raw = model_cls.__dict__[name] if had else None
                wrapper = make(original)
                setattr(model_cls, name, wrapper)
                self.patched.append((model_cls, name, raw, wrapper, had))
            except Exception as exc:
                self.error(f"patch {name}", exc)

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

    def _wrap_compile(self, original: Callable[..., Any]) -> Callable[..., Any]:
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
                    hooks.before_compile(sig, self, args, kwargs)
                except Exception as exc:
                    hooks.error("compile", exc)
            hooks.set_depth("compile", depth + 1)
            try:
                return original(self, *args, **kwargs)
            finally:
                hooks.set_depth("compile", depth)

        compile.__closuretrace_hook__ = "compile"  # type: ignore[attr-defined]
        return compile

    def _wrap_fit(self, original: Callable[..., Any]) -> Callable[..., Any]:
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
                    hooks.after_fit(self, new_fn, history)
                except Exception as exc:
                    hooks.error("fit", exc)
            return history

        fit.__closuretrace_hook__ = "fit"  # type: ignore[attr-defined]
        return fit


def _arguments(
    sig: inspect.Signature | None, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """compile()'s arguments by name, defaults included; ``None`` if they do not fit its signature."""
    if sig is None:
        return dict(kwargs)
    try:
        bound = sig.bind(model, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self", None)
    return out


def _strings(structure: Any) -> Iterator[str]:
    """Keras names (strings) in a nested loss structure, for display."""
    stack: list[tuple[Any, int]] = [(structure, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            yield item
        elif depth < _MAX_DEPTH and isinstance(item, dict):
            stack.extend((v, depth + 1) for v in reversed(list(item.values())))
        elif depth < _MAX_DEPTH and isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in reversed(item))


def install(profiler: Any) -> Callable[[], None]:
    """Hook ``keras.Model.compile``/``fit`` for ``profiler`` once the program imports Keras.

    Returns the function that removes the hooks (or cancels the pending import callback) and restores
    ``keras.Model`` exactly as it was.
    """
    hooks = _Hooks(profiler)

    def on_import(module: Any) -> None:
        # Runs inside the program's ``import keras``: it must never raise there.
        try:
            hooks.patch(module)
        except Exception as exc:
            hooks.error("patch", exc)

    cancel = when_imported("keras", on_import)

    def remove() -> None:
        try:
            cancel()
        finally:
            hooks.unpatch()

    return remove
