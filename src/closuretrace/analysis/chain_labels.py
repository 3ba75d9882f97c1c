"""Labels for the hops of a retention chain: how each object is reached from the one before it.

The label scheme is described in :mod:`closuretrace.analysis.chains`. Every label is computed defensively: a
hostile ``__eq__``/``__repr__``/``__getattr__`` on the chain must not break the search, so objects are
compared with ``is``, typed with ``type()``, and every probe is wrapped.
"""

from __future__ import annotations

import collections
import types
from collections.abc import Iterator
from typing import TypeGuard, TypeVar

from closuretrace.analysis.kernel_names import kernel_note

_T = TypeVar("_T")
#: Longest key repr in a ``['key']`` label.
_KEY_REPR_MAX = 60
_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_CELL = types.CellType
# C fields whose getters have side effects (create dicts or frame objects) or run user code.
_NO_PROBE = frozenset({"__dict__", "__weakref__", "__annotations__", "f_locals", "gi_frame", "cr_frame", "ag_frame"})
# Types of property getters that are compiled code (``instancemethod`` is pybind11's wrapper).
_C_GETTERS = frozenset({"builtin_function_or_method", "instancemethod", "method_descriptor", "wrapper_descriptor"})
_ATOMIC_KEYS = (str, int, float, complex, bool, bytes, type(None))
#: ``cls.__dict__`` (a mappingproxy), bypassing metaclass tricks
type_dict = type.__dict__["__dict__"].__get__  # mappingproxy of a class, bypassing metaclass tricks
_type_name = type.__dict__["__name__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_type_mro = type.__dict__["__mro__"].__get__


# ------------------------------------------------------------------------------------------- labels


def label_path(path: list[object], root: str) -> list[str]:
    """The hop labels of ``path`` (objects, root first) under ``root``; empties ``path`` so nothing is kept."""
    try:
        hops = [f"{root}{kernel_note(root)} → {describe(path[0])}"]
        i = 0
        while i < len(path) - 1:
            try:
                edge, step = _edge(path, i)
            except Exception:
                edge, step = f"(referenced by {short_type(path[i])})", 1
            i += step
            hops.append(f"{edge} → {describe(path[i])}")
        return hops
    finally:
        path.clear()


def _edge(path: list[object], i: int) -> tuple[str, int]:
    """The label of the edge ``path[i] -> path[i+1]`` and how many objects it spans (collapsed edges: 2-3)."""
    p, c = path[i], path[i + 1]
    after = path[i + 2] if i + 2 < len(path) else None
    has_after = i + 2 < len(path)
    if isa(p, types.FunctionType):
        return _function_edge(p, c, after, has_after, i + 3 < len(path))
    if isa(p, type):
        if type(c) is dict:  # a heap type's only dict referent is its __dict__
            if has_after:
                key = dict_key_of(c, after)
                if isa(key, str):
                    return f"{_safe(_type_name, p)}.{key}", 2
            return f"{_safe(_type_name, p)}.__dict__", 1
        name = probe_fields(p, c)
        if name is not None:
            return f".{name}", 1
    if isa(p, dict):
        key = dict_key_of(p, c)
        if key is not MISSING:
            return f"[{key_repr(key)}]", 1
        for k in dict.keys(p):
            if k is c:
                return "<key of dict>", 1
    if _isa_any(p, (list, tuple, collections.deque)):
        idx = _index_of(p, c)
        if idx is not None:
            if isa(p, tuple) and type(p) is not tuple:
                fields = _safe(lambda t: type_dict(t).get("_fields"), type(p))
                if isa(fields, tuple) and idx < len(fields) and isa(fields[idx], str):
                    return f".{fields[idx]}", 1
            return f"[{idx}]", 1
    if _isa_any(p, (set, frozenset)):
        return "{member}", 1
    if type(p) is _CELL:
        return "cell contents", 1
    if type(p) is types.MethodType:
        if p.__self__ is c:
            return ".__self__", 1
        if p.__func__ is c:
            return ".__func__", 1
    name = probe_fields(p, c)
    if name is not None:
        return f".{name}", 1
    if not _isa_any(p, (dict, list, tuple, set, frozenset, type, types.ModuleType)):
        own = owner_dict(p)
        if own is not None:
            if own is c:
                if has_after:
                    key = dict_key_of(own, after)
                    if isa(key, str):
                        return f".{key}", 2
                return ".__dict__", 1
            key = dict_key_of(own, c)
            if isa(key, str):
                return f".{key}", 1
    elif isa(p, types.ModuleType):
        own = owner_dict(p)
        if own is c:
            if has_after:
                key = dict_key_of(own, after)
                if isa(key, str):
                    return f".{key}", 2
            return ".__dict__", 1
    name = _probe_c_properties(p, c)
    if name is not None:
        return f".{name}", 1
    if _isa_any(p, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        kind = type(p).__name__
        return f"local variable of {kind} {_safe(lambda g: g.__qualname__, p)}", 1
    if type(p) is types.FrameType:
        return f"local variable of finished frame {code_qualname(p.f_code)}", 1
    return f"(referenced by {short_type(p)})", 1


def _function_edge(
    f: types.FunctionType, c: object, after: object, has_after: bool, has_after2: bool
) -> tuple[str, int]:
    name = f.__name__
    closure = f.__closure__
    if closure is not None and c is closure:
        if has_after:
            idx = _index_of(closure, after)
            if idx is not None:
                var = f.__code__.co_freevars[idx] if idx < len(f.__code__.co_freevars) else f"#{idx}"
                # function -> __closure__ -> cell -> value is one hop; it stops at the cell if that is the target
                return f"closure cell '{var}' of {name}", (3 if has_after2 else 2)
        return ".__closure__", 1
    defaults = f.__defaults__
    if defaults is not None and c is defaults:
        if has_after:
            idx = _index_of(defaults, after)
            if idx is not None:
                code = f.__code__
                pos = code.co_varnames[: code.co_argcount]
                j = len(pos) - len(defaults) + idx
                pname = pos[j] if 0 <= j < len(pos) else f"#{idx}"
                return f"default of parameter '{pname}' of {name}", 2
        return ".__defaults__", 1
    kwdefaults = f.__kwdefaults__
    if kwdefaults is not None and c is kwdefaults:
        if has_after:
            key = dict_key_of(kwdefaults, after)
            if isa(key, str):
                return f"default of keyword-only parameter '{key}' of {name}", 2
        return ".__kwdefaults__", 1
    if c is f.__globals__:
        if has_after:
            key = dict_key_of(f.__globals__, after)
            if key is not MISSING:
                return f".__globals__[{key_repr(key)}]", 2
        return ".__globals__", 1
    if c is f.__code__:
        return ".__code__", 1
    if type(c) is dict:
        own = owner_dict(f)
        if own is c:
            if has_after:
                key = dict_key_of(own, after)
                if isa(key, str):
                    return f".{key}", 2
            return ".__dict__", 1
    name2 = probe_fields(f, c)
    if name2 is not None:
        return f".{name2}", 1
    return f"(referenced by function {f.__qualname__})", 1


# ------------------------------------------------------------------------------------------- helpers


def isa(obj: object, cls: type[_T]) -> TypeGuard[_T]:
    """``isinstance`` by the real type: never calls a ``__class__`` property or ``__getattribute__``."""
    return issubclass(type(obj), cls)


def _isa_any(obj: object, classes: tuple[type, ...]) -> bool:
    return issubclass(type(obj), classes)


class _Missing:
    pass


#: What :func:`dict_key_of` returns when the dict does not hold the value.
MISSING: object = _Missing()


def _safe(fn: object, arg: object) -> object:
    try:
        return fn(arg)  # type: ignore[operator]
    except Exception:
        return None


def dict_key_of(d: object, value: object) -> object:
    """The key under which ``d`` holds ``value`` (identity), or ``MISSING``."""
    if not isa(d, dict):
        return MISSING
    try:
        for k, v in dict.items(d):
            if v is value:
                return k
    except Exception:
        pass
    return MISSING


def _index_of(seq: object, item: object) -> int | None:
    try:
        it: Iterator[object]
        if isa(seq, list):
            it = list.__iter__(seq)
        elif isa(seq, tuple):
            it = tuple.__iter__(seq)
        elif isa(seq, collections.deque):
            it = collections.deque.__iter__(seq)
        else:
            return None
        for i, x in enumerate(it):
            if x is item:
                return i
    except Exception:
        pass
    return None


def key_repr(key: object) -> str:
    """A dict key as a label shows it: ``repr`` of builtin keys (cut at 60 characters), others by address."""

    def safe_repr(k: object, depth: int = 0) -> str:
        if type(k) in _ATOMIC_KEYS:
            return repr(k)
        if type(k) is tuple and depth < 3 and len(k) <= 8:
            inner = ", ".join(safe_repr(x, depth + 1) for x in k)
            return f"({inner},)" if len(k) == 1 else f"({inner})"
        return object.__repr__(k)

    try:
        text = safe_repr(key)
    except Exception:
        text = f"<{short_type(key)} key>"
    return text if len(text) <= _KEY_REPR_MAX else text[: _KEY_REPR_MAX - 1] + "…"


def owner_dict(p: object) -> dict[object, object] | None:
    """``p.__dict__`` through the C descriptor only (a Python-level ``__dict__`` property is not called)."""
    try:
        tp = type(p)
        for klass in _type_mro(tp):
            desc = type_dict(klass).get("__dict__")
            if desc is None:
                continue
            if type(desc) in (_GETSET, _MEMBER):
                d = desc.__get__(p, tp)
                return d if isa(d, dict) else None
            return None
    except Exception:
        return None
    return None


def probe_fields(p: object, c: object) -> str | None:
    """Name of a C-level field of ``p`` holding ``c``: ``__slots__`` members and other member descriptors of
    any class, getset descriptors of builtin classes only (their getters are cheap and side-effect free)."""
    try:
        tp = type(p)
        for klass in _type_mro(tp):
            builtin = _type_module(klass) == "builtins"
            for name, desc in list(type_dict(klass).items()):
                if name in _NO_PROBE or not isa(name, str):
                    continue
                kind = type(desc)
                if kind is _MEMBER or (kind is _GETSET and builtin):
                    try:
                        v = desc.__get__(p, tp)
                    except Exception:
                        continue
                    if v is c:
                        return name
    except Exception:
        return None
    return None


def _probe_c_properties(p: object, c: object) -> str | None:
    """Name of a ``property`` of ``p`` holding ``c`` whose getter is compiled code (pybind11/C extension
    fields such as TensorFlow's ``SymbolicTensor.graph``); Python-level getters are never called."""
    try:
        tp = type(p)
        for klass in _type_mro(tp):
            if _type_module(klass) == "builtins":
                continue
            for name, desc in list(type_dict(klass).items()):
                if type(desc) is not property or not isa(name, str) or name in _NO_PROBE:
                    continue
                fget = desc.fget
                if fget is None or type(fget).__name__ not in _C_GETTERS:
                    continue
                try:
                    v = desc.__get__(p, tp)
                except Exception:
                    continue
                if v is c:
                    return name
    except Exception:
        return None
    return None


def code_qualname(code: types.CodeType) -> str:
    """The qualified name of a code object (``co_qualname``, or ``co_name`` before Python 3.11)."""
    return str(getattr(code, "co_qualname", code.co_name))


def short_type(obj: object) -> str:
    """``Type (module)`` of ``obj``, or just ``Type`` for builtins; never runs the object's code."""
    tp = type(obj)
    try:
        mod = _type_module(tp)
        qual = _type_qualname(tp)
    except Exception:
        return "object"
    if not isa(qual, str):
        qual = "object"
    if mod == "builtins" or not isa(mod, str):
        return qual
    return f"{qual} ({mod})"


def describe(obj: object) -> str:
    """A short readable name for an object on the chain (see the module docstring)."""
    try:
        tp = type(obj)
        if tp is types.FunctionType:
            return f"function {obj.__qualname__}"  # type: ignore[attr-defined]
        if tp is types.MethodType:
            func = obj.__func__  # type: ignore[attr-defined]
            qual = func.__qualname__ if isa(func, types.FunctionType) else short_type(func)
            return f"bound method {qual}"
        if tp in (types.BuiltinFunctionType, types.BuiltinMethodType):
            return f"builtin {obj.__qualname__}"  # type: ignore[attr-defined]
        if isa(obj, type):
            mod = _type_module(obj)
            qual = _type_qualname(obj)
            return f"class {qual}" if mod == "builtins" else f"class {qual} ({mod})"
        if isa(obj, types.ModuleType):
            own = owner_dict(obj)
            name = own.get("__name__") if own is not None else None
            return f"module {name}" if isa(name, str) else "module"
        if tp is types.CodeType:
            return f"code {code_qualname(obj)}"  # type: ignore[arg-type]
        if tp is types.FrameType:
            return f"frame of {code_qualname(obj.f_code)}"  # type: ignore[attr-defined]
        if tp in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
            return f"{tp.__name__} {obj.__qualname__}"  # type: ignore[attr-defined]
        if tp is _CELL:
            return "cell"
    except Exception:
        pass
    return short_type(obj)
