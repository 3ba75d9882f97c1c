"""Describe what a callable captures (closure cells, partial arguments, attributes) without holding it.

Everything here returns plain strings and numbers. Sizes are read from metadata (``nbytes``, shape x dtype),
never by copying or converting the value, so a 1 GB array costs nothing to describe. Reprs are guarded: a
``__repr__`` that raises, recurses or returns megabytes yields a short placeholder or a truncated string, and
one written in Python (the program's own classes, whose ``__repr__`` may take a lock, wait on I/O or loop) runs
in a helper thread under a time budget (:data:`REPR_TIMEOUT`): past it the capture reads
``<T: repr timed out>``, the helper is asked to stop (an exception is raised in it where it runs Python code),
and later values of that type are not repr'd again. Builtin scalars, containers of them and arrays never pay
for the thread. Attribute reads (``shape``, ``dtype``, ``nbytes``) are not time-limited.
"""

from __future__ import annotations

import _thread
import functools
import reprlib
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from closuretrace.session import Capture
from closuretrace.session.model import CallableKind

REPR_LIMIT = 120
_SHALLOW_ITEMS = 10_000  # a container with more items is sized by its header only, and said so

#: Seconds a ``__repr__`` written in Python may take before the capture says ``repr timed out``.
REPR_TIMEOUT = 0.05

#: ``__repr__`` implementations written in C: called directly (they cannot block on the program's locks).
_C_CALLABLES = (
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
)

#: Types whose ``__repr__`` ran past :data:`REPR_TIMEOUT` once: not tried again (weakly held).
_slow_types: weakref.WeakSet[type] = weakref.WeakSet()


class _ReprTimeout(Exception):
    """Raised asynchronously in a helper thread whose ``__repr__`` ran past its budget."""


def _has_c_repr(t: type) -> bool:
    """Whether ``t.__repr__`` is implemented in C (found along the MRO without calling any descriptor)."""
    try:
        for klass in t.__mro__:
            impl = klass.__dict__.get("__repr__")
            if impl is not None:
                return isinstance(impl, _C_CALLABLES)
    except Exception:
        return False
    return True


def _stop_thread(ident: int) -> None:
    """Raise :class:`_ReprTimeout` in thread ``ident`` (it takes effect when the thread next runs Python code)."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_ReprTimeout))
    except Exception:
        pass


def _timed_repr(obj: Any, timeout: float = REPR_TIMEOUT) -> tuple[bool, str]:
    """``(True, repr(obj))``, or ``(False, placeholder)`` if it raised, recursed or ran past ``timeout``.

    The repr runs in a helper thread (``_thread``: not one the program's ``threading.enumerate()`` or the
    interpreter's exit waits for).
    """
    t = type(obj)
    name = qualified_name(t)
    try:
        if t in _slow_types:
            return False, f"<{name}: repr timed out>"
    except TypeError:
        pass
    box: list[tuple[bool, str]] = []
    done = _thread.allocate_lock()
    done.acquire()

    def work() -> None:
        try:
            try:
                box.append((True, repr(obj)))
            except RecursionError:
                box.append((False, f"<{name}: repr recursed>"))
            except BaseException as exc:
                box.append((False, f"<{name}: repr raised {type(exc).__name__}>"))
            finally:
                done.release()
        except BaseException:  # _ReprTimeout arriving late (the repr ended just as the budget did): nothing to say
            pass

    try:
        ident = _thread.start_new_thread(work, ())
    except Exception:  # no thread can be started (resources, interpreter shutdown): do not risk the call
        return False, f"<{name}: repr not run>"
    if not done.acquire(timeout=timeout):
        try:
            _slow_types.add(t)
        except TypeError:
            pass
        _stop_thread(ident)
        return False, f"<{name}: repr timed out>"
    return box[0]


class _GuardedRepr(reprlib.Repr):
    """:class:`reprlib.Repr` whose items with a ``__repr__`` written in Python go through :func:`_timed_repr`."""

    def repr_instance(self, x: Any, level: int) -> str:
        if _has_c_repr(type(x)):
            return super().repr_instance(x, level)
        _, s = _timed_repr(x)
        if len(s) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            s = s[:i] + "..." + s[len(s) - j:]
        return s


_reprs = _GuardedRepr()
_reprs.maxstring = 60
_reprs.maxother = 60
_reprs.maxlist = _reprs.maxtuple = _reprs.maxset = _reprs.maxdict = 6
_reprs.maxlevel = 2


def qualified_name(t: type) -> str:
    """``module.QualName`` of a type; builtins by their bare name (``dict``, ``function``)."""
    mod = getattr(t, "__module__", "") or ""
    qual = str(getattr(t, "__qualname__", None) or getattr(t, "__name__", "?"))
    return qual if mod == "builtins" else f"{mod}.{qual}"


def type_name(obj: Any) -> str:
    """The qualified name of ``obj``'s type."""
    return qualified_name(type(obj))


def _array_meta(obj: Any) -> tuple[str, str] | None:
    """(shape, dtype) read from an array-like's metadata, or None if it is not one."""
    shape = getattr(obj, "shape", None)
    dtype = getattr(obj, "dtype", None)
    if shape is None or dtype is None:
        return None
    try:
        dims = tuple(shape)
        return "x".join(str(d) for d in dims) or "scalar", str(getattr(dtype, "name", dtype))
    except Exception:
        return None


def nbytes_of(obj: Any) -> int | None:
    """Bytes held by ``obj`` where that is knowable without copying it; ``None`` where it is not.

    NumPy arrays and anything with an integer ``nbytes``; TensorFlow tensors and variables from
    shape x dtype size; bytes-like and strings by ``sys.getsizeof``; containers shallowly (the container
    plus the direct items' ``getsizeof``).
    """
    try:
        nb = getattr(obj, "nbytes", None)
        if isinstance(nb, int) and not isinstance(nb, bool):
            return nb
        mod = type(obj).__module__ or ""
        if mod.startswith(("tensorflow", "keras")):
            shape = getattr(obj, "shape", None)
            dtype = getattr(obj, "dtype", None)
            if shape is not None and dtype is not None:
                n = 1
                for d in tuple(shape):
                    if d is None:
                        return None
                    n *= int(d)
                size = getattr(dtype, "size", None)
                if isinstance(size, int):
                    return n * size
            return None
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return obj.nbytes if isinstance(obj, memoryview) else sys.getsizeof(obj)
        if isinstance(obj, (str, int, float, complex, bool, type(None))):
            return sys.getsizeof(obj)
        if isinstance(obj, (list, tuple, set, frozenset, dict)):
            size = sys.getsizeof(obj)
            if len(obj) > _SHALLOW_ITEMS:
                return size
            items: Any = obj.items() if isinstance(obj, dict) else obj
            if isinstance(obj, dict):
                for k, v in items:
                    size += sys.getsizeof(k) + sys.getsizeof(v)
            else:
                for v in items:
                    size += sys.getsizeof(v)
            return size
    except Exception:
        return None
    return None


def safe_repr(obj: Any, limit: int = REPR_LIMIT) -> str:
    """A short repr that never raises nor blocks: arrays by shape/dtype, builtins via reprlib, a ``__repr__``
    written in Python under a time budget (:func:`_timed_repr`), others guarded."""
    try:
        meta = _array_meta(obj)
        if meta is not None and not isinstance(obj, (str, bytes)):
            return f"<{type(obj).__name__} shape={meta[0]} dtype={meta[1]}>"
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
            return f"<{type(obj).__name__} {getattr(obj, '__qualname__', '?')}>"
        t = type(obj)
        # reprlib shortens builtin containers; for anything else it would hide a failing __repr__.
        if t.__module__ == "builtins":
            text = _reprs.repr(obj)
        elif _has_c_repr(t):
            text = repr(obj)
        else:
            ok, text = _timed_repr(obj)
            if not ok:
                return text
    except RecursionError:
        return f"<{type_name(obj)}: repr recursed>"
    except Exception as exc:
        return f"<{type_name(obj)}: repr raised {type(exc).__name__}>"
    if not isinstance(text, str):
        return f"<{type_name(obj)}: repr returned {type(text).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text.isascii():
        # A lone surrogate (a __repr__ may return one) cannot be written as UTF-8: write it as its escape.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


#: Builtin scalars: their repr cannot fail or recurse, so the hot path skips every guard for them.
_SCALARS: dict[type, str] = {t: t.__qualname__ for t in (int, float, bool, complex, type(None), str, bytes)}


def _scalar_repr(value: Any, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(name: str, value: Any) -> Capture:
    """What ``value`` is, how big, and a short repr, as a :class:`Capture` named ``name``."""
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return Capture(name, scalar, sys.getsizeof(value), _scalar_repr(value, REPR_LIMIT))
    return Capture(name=name, type=type_name(value), nbytes=nbytes_of(value), repr=safe_repr(value))


def iter_captured(fn: Any) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, value)`` for what ``fn`` captured: closure cells by variable name, a partial's
    arguments, or a callable object's public instance attributes (shallow)."""
    closure = getattr(fn, "__closure__", None)
    code = getattr(fn, "__code__", None)
    if isinstance(fn, functools.partial):
        yield from iter_captured(fn.func) if getattr(fn.func, "__closure__", None) else ()
        for i, a in enumerate(fn.args):
            yield f"args[{i}]", a
        for k, v in (fn.keywords or {}).items():
            yield k, v
        return
    if closure is not None and code is not None:
        for var, cell in zip(code.co_freevars, closure):
            try:
                yield var, cell.cell_contents
            except ValueError:  # an empty cell (variable not yet assigned)
                continue
        return
    if not isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        attrs = getattr(fn, "__dict__", None)
        if isinstance(attrs, dict):
            for k, v in list(attrs.items())[:50]:
                if not k.startswith("_") and not callable(v):
                    yield k, v


def describe_captures(fn: Any) -> list[Capture]:
    """:func:`describe` for each value ``fn`` captured (see :func:`iter_captured`); never raises."""
    try:
        if type(fn) is types.FunctionType:
            # The hot path: a plain closure, described cell by cell without the generator.
            closure = fn.__closure__
            if closure is None:
                return []
            try:
                return [describe(n, c.cell_contents) for n, c in zip(fn.__code__.co_freevars, closure)]
            except ValueError:  # an empty cell: fall through to the careful path, which skips it
                pass
        return [describe(n, v) for n, v in iter_captured(fn)]
    except Exception:
        return []


def callable_kind(fn: Any) -> CallableKind:
    """What ``fn`` is: a closure, a plain function, a lambda, a ``functools.partial`` or another callable."""
    if isinstance(fn, functools.partial):
        return "partial"
    if isinstance(fn, types.FunctionType):
        if fn.__name__ == "<lambda>":
            return "lambda"
        return "closure" if fn.__closure__ else "function"
    return "object"


def describe_callable(fn: Any) -> tuple[str, str, CallableKind]:
    """(qualname, module, kind) of any callable, for display."""
    if type(fn) is types.FunctionType:
        return fn.__qualname__, fn.__module__ or "", callable_kind(fn)
    target: Any = fn.func if isinstance(fn, functools.partial) else fn
    qual = getattr(target, "__qualname__", None)
    if not isinstance(qual, str):
        qual = type(target).__qualname__
    mod = getattr(target, "__module__", None)
    if not isinstance(mod, str):
        mod = type(target).__module__
    if isinstance(fn, functools.partial):
        qual = f"partial({qual})"
    return qual, mod, callable_kind(fn)


def factory_of(qualname: str, module: str) -> str:
    """The enclosing function that made a closure: ``outer_loss.<locals>.loss_function`` -> ``outer_loss``."""
    head, sep, _ = qualname.rpartition(".<locals>.")
    base = head if sep else qualname
    return base if module in ("__main__", "") else f"{module}.{base}"


def _arg_repr(value: Any) -> str:
    return _scalar_repr(value, 60) if type(value) in _SCALARS else safe_repr(value, 60)


def short_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """Reprs of a factory call's arguments (at most 8 positional and 8 keyword, each at most 60 characters)."""
    out = [_arg_repr(a) for a in args[:8]]
    if kwargs:
        out += [f"{k}={_arg_repr(v)}" for k, v in list(kwargs.items())[:8]]
    return out


Describer = Callable[[Any], list[Capture]]
