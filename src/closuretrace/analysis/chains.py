"""Retention chains: the path of strong references from a module global down to one live object.

:func:`find_chain` answers "what keeps this object alive?" with a list of readable hops, root first. For::

    # module demo
    class Payload: ...

    def outer(payload):
        def inner():
            return payload
        return inner

    keep = [outer(Payload())]

``find_chain(keep[0].__closure__[0].cell_contents).hops`` is::

    demo.keep → list
    [0] → function outer.<locals>.inner
    closure cell 'payload' of inner → Payload (demo)

and a TensorFlow graph kept alive by the gradient registry (Keras 3 on TensorFlow 2.21) reads::

    tensorflow.python.framework.ops.gradient_registry → Registry (tensorflow.python.framework.registry)
    ._registry → dict
    ['CustomGradient-174'] → dict
    ['type'] → function _graph_mode_decorator.<locals>.internal_grad_fn
    closure cell 'tape_grad_fn' of internal_grad_fn → function _graph_mode_decorator.<locals>.tape_grad_fn
    closure cell 'result' of tape_grad_fn → list
    [1] → SymbolicTensor (tensorflow.python.framework.ops)
    .graph → FuncGraph (tensorflow.python.framework.func_graph)

Label scheme
------------
Every hop is ``<how it is reached> → <what it reaches>``.

*How it is reached* (the edge, seen from the object one hop up):

=========================================  ==========================================================
``mod.name``                               first hop: global ``name`` of module ``mod`` (the root)
``frame of f local 'x'``                   first hop when no module global holds the object, only a
                                           local variable of a running function (fallback root)
``['key']``                                dict value (``repr`` of builtin keys, 60 characters at most;
                                           other keys as ``<Type object at 0x…>``, no user code runs)
``<key of dict>``                          dict key
``[i]``                                    list, tuple or deque element (``.field`` for a namedtuple)
``{member}``                               set or frozenset member
``.attr``                                  instance attribute (``__dict__`` or ``__slots__``), a C
                                           field such as ``.__self__``, ``.__func__``, ``.tb_frame``,
                                           or a compiled (pybind11) property such as ``.graph``
``Class.attr``                             class attribute (an entry of the class ``__dict__``)
``closure cell 'v' of f``                  function ``f`` → ``__closure__`` → cell → value, collapsed:
                                           ``v`` is the captured variable (``co_freevars``)
``default of parameter 'p' of f``          ``f.__defaults__`` entry; ``default of keyword-only
                                           parameter 'p' of f`` for ``__kwdefaults__``
``.__globals__['key']``                    a global of a function whose globals are not a module's
``cell contents``                          a cell reached other than through its function
``local variable of generator g``          a suspended generator/coroutine holds it (``local variable
                                           of finished frame f``: a frame kept by a traceback)
``(referenced by T)``                      any other strong reference from an object of type ``T``
=========================================  ==========================================================

*What it reaches* (the object): ``list``, ``dict``, ``tuple``, ``cell`` … for builtins;
``function <qualname>``; ``bound method <qualname>``; ``class <qualname> (<module>)``; ``module <name>``;
``code <qualname>``; ``generator <qualname>``; ``frame of <qualname>``; and for any other instance the
type's qualified name followed by its module in parentheses, e.g.
``FuncGraph (tensorflow.python.framework.func_graph)``.

Search
------
A backward, level-synchronous breadth-first search from the target. Each level finds the referrers of the
whole frontier with a single pass over the heap: ``gc.get_referrers(*frontier)`` while the frontier is small,
and, for larger frontiers, one pass over ``gc.get_objects()`` in chunks (``gc.get_referents(*chunk)``
intersected by id with the frontier), because ``gc.get_referrers`` compares every reference in the heap
with every frontier object and so costs *heap × frontier*. The search stops at the first level that reaches a
module's ``__dict__``. The search's own containers and frames, the ``ignore`` objects and ``gc.garbage`` are
never referrers. A frame of a finished function (kept alive by a traceback) is traversed like any object;
running functions' frames are not visible to the garbage collector on CPython 3.11+, so when no module global
is found the stacks of all threads are searched for a local variable holding an object of the chain (the
one nearest the target wins); that result has ``found=True``, a ``frame of …`` root and a ``note``.

Limits: only references the garbage collector can see count (C++ holders, untracked containers holding
only atomic values and ``gc.freeze()``-ed objects are invisible). Labelling may create an instance's
``__dict__`` (CPython ≤ 3.12 keeps attributes inline until asked), and the frame fallback reads
``frame.f_locals``, which on CPython ≤ 3.12 caches a snapshot of that function's locals until it returns.
Nothing else is kept: the result holds strings only.
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import time
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeGuard, TypeVar

__all__ = ["ChainResult", "find_chain"]

_T = TypeVar("_T")

#: Frontier sizes up to this use ``gc.get_referrers``; above it a forward pass over ``gc.get_objects``
#: (cost independent of the frontier size) is cheaper.
_REFERRERS_MAX_FRONTIER = 128
#: Objects per ``gc.get_referents(*chunk)`` call in the forward pass.
_CHUNK = 1024
#: How often (in loop iterations) long loops look at the clock.
_CLOCK_EVERY = 256
#: Longest key repr in a ``['key']`` label.
_KEY_REPR_MAX = 60

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_CELL = types.CellType
# C fields whose getters have side effects (create dicts or frame objects) or run user code.
_NO_PROBE = frozenset({"__dict__", "__weakref__", "__annotations__", "f_locals", "gi_frame", "cr_frame", "ag_frame"})
# Types of property getters that are compiled code (``instancemethod`` is pybind11's wrapper).
_C_GETTERS = frozenset({"builtin_function_or_method", "instancemethod", "method_descriptor", "wrapper_descriptor"})
_ATOMIC_KEYS = (str, int, float, complex, bool, bytes, type(None))
_type_dict = type.__dict__["__dict__"].__get__  # mappingproxy of a class, bypassing metaclass tricks
_type_name = type.__dict__["__name__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_type_mro = type.__dict__["__mro__"].__get__


@dataclass
class ChainResult:
    """What :func:`find_chain` found; strings only, so it keeps nothing alive.

    ``hops`` is root first and its last hop reaches the target. ``root`` is ``"module.global"`` (or
    ``"frame of f local 'x'"`` when only a running function's local holds the object). ``note`` says why
    nothing was found, or qualifies a fallback result.
    """

    found: bool
    hops: list[str]
    root: str | None
    note: str | None
    seconds: float


def find_chain(
    target: object,
    *,
    ignore: Iterable[object] = (),
    max_depth: int = 25,
    timeout: float = 5.0,
    max_frontier: int = 5000,
) -> ChainResult:
    """Find a shortest chain of strong references from a module global to ``target``.

    ``ignore``: objects (a profiler's own containers) never used as a link of the chain. ``max_depth``: at
    most this many levels of referrers are searched. ``timeout``: seconds for the whole search (checked
    between levels and inside long loops; one heap pass is not interrupted). ``max_frontier``: at most this
    many new objects are followed per level, in discovery order (direct references before objects that only
    point at the frontier through their type).
    """
    t0 = time.perf_counter()
    deadline = t0 + max(0.0, float(timeout))
    skip: set[int] = {id(ignore), id(gc.garbage)}
    try:
        skip.update(map(id, ignore))
    except Exception:
        pass
    try:
        result = _find(target, skip, max(0, max_depth), deadline, max(1, max_frontier), timeout)
    finally:
        skip.clear()
    hops, root, note, found = result
    return ChainResult(found=found, hops=hops, root=root, note=note, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- search


def _module_roots() -> dict[int, str]:
    """``id(module.__dict__) -> module name`` for every module in ``sys.modules``."""
    roots: dict[int, str] = {}
    getdict = _type_dict(types.ModuleType)["__dict__"].__get__
    for name, mod in list(sys.modules.items()):
        if not _isa(mod, types.ModuleType):
            continue
        try:
            d = getdict(mod)
        except Exception:
            continue
        if type(d) is not dict:
            continue
        own = d.get("__name__")
        if id(d) not in roots or own == name:  # prefer the module's own name over an alias
            roots[id(d)] = name
    return roots


def _is_own_frame(frame: types.FrameType) -> bool:
    """A frame of closuretrace itself: its locals hold the target and are never a root."""
    try:
        return frame.f_code.co_filename.startswith(_PKG_DIR)
    except Exception:
        return True


def _executing_frame_ids() -> set[int]:
    ids: set[int] = set()
    tops = sys._current_frames()
    top: types.FrameType | None = None
    f: types.FrameType | None = None
    try:
        for top in tops.values():
            f = top
            while f is not None:
                ids.add(id(f))
                f = f.f_back
    finally:
        # ``top`` may be this very frame: unbound, or the frame would keep itself (and its callers) alive
        tops.clear()
        top = f = None
    return ids


def _child_of(r: object, frontier_ids: set[int] | dict[int, int]) -> int | None:
    """The id of the first object of the frontier that ``r`` refers to directly."""
    for x in gc.get_referents(r):
        i = id(x)
        if i in frontier_ids:
            return i
    return None


def _find(
    target: object, skip: set[int], max_depth: int, deadline: float, max_frontier: int, timeout: float
) -> tuple[list[str], str | None, str | None, bool]:
    nodes: dict[int, object] = {id(target): target}  # everything seen, kept alive for the search only
    down: dict[int, int] = {}  # referrer id -> id of the object it holds, one hop nearer the target
    depth: dict[int, int] = {id(target): 0}
    frontier: list[object] = [target]
    found_refs: list[object] = []
    nxt: list[object] = []
    weak_next: list[object] = []
    own = (id(nodes), id(down), id(depth), id(frontier), id(found_refs), id(nxt), id(weak_next))
    skip.update(own)
    roots = _module_roots()
    executing: set[int] | None = None
    root_dict: object = None
    root_child = 0
    note: str | None = None
    capped = False
    timed_out = False
    level = 0
    try:
        while True:
            if not frontier:
                note = (
                    f"no path to a module global: the search ran out of referrers after {level} hop(s) "
                    f"({len(nodes)} object(s) seen); what holds them is invisible to the garbage collector "
                    "(a running function's local variable or C code)"
                )
                break
            if level >= max_depth:
                note = f"no path to a module global within {max_depth} hops"
                break
            if time.perf_counter() > deadline:
                timed_out = True
                break
            frontier_ids = {id(o) for o in frontier}
            if not _scan(frontier, frontier_ids, found_refs, skip, deadline):
                timed_out = True
                break
            # 1) a module dict among the referrers ends the search at this level
            #    (a public global is preferred to a private one reached at the same depth)
            best_private = True
            for r in found_refs:
                rid = id(r)
                if rid in roots and rid not in skip:
                    child = _child_of(r, frontier_ids)
                    if child is None:
                        continue
                    key = _dict_key_of(r, nodes[child])
                    private = not (_isa(key, str) and not key.startswith("_"))
                    if root_dict is None or (best_private and not private):
                        best_private, root_dict, root_child = private, r, child
            if root_dict is not None:
                break
            # 2) otherwise every new referrer joins the next frontier
            nxt.clear()
            weak_next.clear()
            n = 0
            for r in found_refs:
                n += 1
                if n % _CLOCK_EVERY == 0 and time.perf_counter() > deadline:
                    timed_out = True
                    break
                rid = id(r)
                if rid in nodes or rid in skip:
                    continue
                if type(r) is types.FrameType:
                    if _is_own_frame(r):
                        continue
                    if executing is None:
                        executing = _executing_frame_ids()
                    if rid in executing:  # a running function: found by the frame fallback below
                        continue
                child = _child_of(r, frontier_ids)
                if child is None:
                    continue
                # objects that reach the frontier only through their type come last
                queue = weak_next if child == id(type(r)) else nxt
                if len(nxt) + len(weak_next) >= max_frontier:
                    capped = True
                    continue
                queue.append(r)
                nodes[rid] = r
                down[rid] = child
                depth[rid] = level + 1
            found_refs.clear()
            frontier.clear()
            frontier.extend(nxt)
            frontier.extend(weak_next)
            nxt.clear()
            weak_next.clear()
            level += 1
            if timed_out:
                break
        found_refs.clear()
        frontier.clear()

        if root_dict is not None:
            root_name = roots[id(root_dict)]
            key = _dict_key_of(root_dict, nodes[root_child])
            root = f"{root_name}.{key}" if _isa(key, str) else f"{root_name}[{_key_repr(key)}]"
            hops = _label_path(_path(nodes, down, root_child, id(target)), root)
            return hops, root, None, True

        if timed_out:
            note = f"search stopped at the time limit ({timeout:g} s) after {level} hop(s) and {len(nodes)} object(s)"
        if capped and note is not None:
            note += f"; at most {max_frontier} objects were followed per hop, some paths were not"
        if not timed_out:
            fallback = _frame_fallback(depth, skip)
            if fallback is not None:
                root, child = fallback
                hops = _label_path(_path(nodes, down, child, id(target)), root)
                within = f" within {max_depth} hops" if level >= max_depth else ""
                why = f"no module global holds it{within}; a local variable of a running function does"
                if capped:
                    why += f" (at most {max_frontier} objects were followed per hop)"
                return hops, root, why, True
        return [], None, note, False
    finally:
        found_refs.clear()
        frontier.clear()
        nxt.clear()
        weak_next.clear()
        nodes.clear()
        down.clear()
        depth.clear()
        root_dict = None
        skip.difference_update(own)


def _scan(frontier: list[object], frontier_ids: set[int], out: list[object], skip: set[int], deadline: float) -> bool:
    """Put into ``out`` every object that refers to some frontier object; False when out of time."""
    if len(frontier) <= _REFERRERS_MAX_FRONTIER:
        args = tuple(frontier)
        try:
            out.extend(gc.get_referrers(*args))
        finally:
            del args
        return True
    everything = gc.get_objects()
    try:
        for start in range(0, len(everything), _CHUNK):
            chunk = everything[start : start + _CHUNK]
            if not frontier_ids.isdisjoint(map(id, gc.get_referents(*chunk))):
                for o in chunk:
                    if id(o) not in skip and not frontier_ids.isdisjoint(map(id, gc.get_referents(o))):
                        out.append(o)
            del chunk
            if start % (_CHUNK * 64) == 0 and time.perf_counter() > deadline:
                return False
    finally:
        del everything
    return True


def _path(nodes: dict[int, object], down: dict[int, int], first: int, last: int) -> list[object]:
    path = [nodes[first]]
    i = first
    while i != last:
        i = down[i]
        path.append(nodes[i])
    return path


def _frame_fallback(depth: dict[int, int], skip: set[int]) -> tuple[str, int] | None:
    """``("frame of f local 'x'", id of the object)`` for the running frame's local nearest the target
    (frames of closuretrace itself and frames passed in ``ignore`` excepted)."""
    best: tuple[int, str, int] | None = None
    tops = sys._current_frames()
    top: types.FrameType | None = None
    f: types.FrameType | None = None
    try:
        for top in tops.values():
            f = top
            while f is not None:
                if id(f) not in skip and not _is_own_frame(f):
                    hit = _frame_local_hit(f, depth)
                    if hit is not None and (best is None or hit[0] < best[0]):
                        best = (hit[0], f"frame of {_code_qualname(f.f_code)} local '{hit[1]}'", hit[2])
                f = f.f_back
    except Exception:
        pass
    finally:
        tops.clear()
        top = f = None  # see _executing_frame_ids
    return None if best is None else (best[1], best[2])


def _frame_local_hit(f: types.FrameType, depth: dict[int, int]) -> tuple[int, str, int] | None:
    try:
        local_vars = f.f_locals
        items = list(dict.items(local_vars)) if _isa(local_vars, dict) else list(local_vars.items())
    except Exception:
        return None
    best: tuple[int, str, int] | None = None
    try:
        for name, value in items:
            d = depth.get(id(value))
            if d is not None and (best is None or d < best[0]):
                best = (d, str(name), id(value))
    finally:
        items.clear()
    return best


# ------------------------------------------------------------------------------------------- labels


def _label_path(path: list[object], root: str) -> list[str]:
    try:
        hops = [f"{root} → {_describe(path[0])}"]
        i = 0
        while i < len(path) - 1:
            try:
                edge, step = _edge(path, i)
            except Exception:
                edge, step = f"(referenced by {_short_type(path[i])})", 1
            i += step
            hops.append(f"{edge} → {_describe(path[i])}")
        return hops
    finally:
        path.clear()


def _edge(path: list[object], i: int) -> tuple[str, int]:
    """The label of the edge ``path[i] -> path[i+1]`` and how many objects it spans (collapsed edges: 2-3)."""
    p, c = path[i], path[i + 1]
    after = path[i + 2] if i + 2 < len(path) else None
    has_after = i + 2 < len(path)
    if _isa(p, types.FunctionType):
        return _function_edge(p, c, after, has_after, i + 3 < len(path))
    if _isa(p, type):
        if type(c) is dict:  # a heap type's only dict referent is its __dict__
            if has_after:
                key = _dict_key_of(c, after)
                if _isa(key, str):
                    return f"{_safe(_type_name, p)}.{key}", 2
            return f"{_safe(_type_name, p)}.__dict__", 1
        name = _probe_fields(p, c)
        if name is not None:
            return f".{name}", 1
    if _isa(p, dict):
        key = _dict_key_of(p, c)
        if key is not _MISSING:
            return f"[{_key_repr(key)}]", 1
        for k in dict.keys(p):
            if k is c:
                return "<key of dict>", 1
    if _isa_any(p, (list, tuple, collections.deque)):
        idx = _index_of(p, c)
        if idx is not None:
            if _isa(p, tuple) and type(p) is not tuple:
                fields = _safe(lambda t: _type_dict(t).get("_fields"), type(p))
                if _isa(fields, tuple) and idx < len(fields) and _isa(fields[idx], str):
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
    name = _probe_fields(p, c)
    if name is not None:
        return f".{name}", 1
    if not _isa_any(p, (dict, list, tuple, set, frozenset, type, types.ModuleType)):
        own = _owner_dict(p)
        if own is not None:
            if own is c:
                if has_after:
                    key = _dict_key_of(own, after)
                    if _isa(key, str):
                        return f".{key}", 2
                return ".__dict__", 1
            key = _dict_key_of(own, c)
            if _isa(key, str):
                return f".{key}", 1
    elif _isa(p, types.ModuleType):
        own = _owner_dict(p)
        if own is c:
            if has_after:
                key = _dict_key_of(own, after)
                if _isa(key, str):
                    return f".{key}", 2
            return ".__dict__", 1
    name = _probe_c_properties(p, c)
    if name is not None:
        return f".{name}", 1
    if _isa_any(p, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        kind = type(p).__name__
        return f"local variable of {kind} {_safe(lambda g: g.__qualname__, p)}", 1
    if type(p) is types.FrameType:
        return f"local variable of finished frame {_code_qualname(p.f_code)}", 1
    return f"(referenced by {_short_type(p)})", 1


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
            key = _dict_key_of(kwdefaults, after)
            if _isa(key, str):
                return f"default of keyword-only parameter '{key}' of {name}", 2
        return ".__kwdefaults__", 1
    if c is f.__globals__:
        if has_after:
            key = _dict_key_of(f.__globals__, after)
            if key is not _MISSING:
                return f".__globals__[{_key_repr(key)}]", 2
        return ".__globals__", 1
    if c is f.__code__:
        return ".__code__", 1
    if type(c) is dict:
        own = _owner_dict(f)
        if own is c:
            if has_after:
                key = _dict_key_of(own, after)
                if _isa(key, str):
                    return f".{key}", 2
            return ".__dict__", 1
    name2 = _probe_fields(f, c)
    if name2 is not None:
        return f".{name2}", 1
    return f"(referenced by function {f.__qualname__})", 1


# ------------------------------------------------------------------------------------------- helpers


def _isa(obj: object, cls: type[_T]) -> TypeGuard[_T]:
    """``isinstance`` by the real type: never calls a ``__class__`` property or ``__getattribute__``."""
    return issubclass(type(obj), cls)


def _isa_any(obj: object, classes: tuple[type, ...]) -> bool:
    return issubclass(type(obj), classes)


class _Missing:
    pass


_MISSING: object = _Missing()


def _safe(fn: object, arg: object) -> object:
    try:
        return fn(arg)  # type: ignore[operator]
    except Exception:
        return None


def _dict_key_of(d: object, value: object) -> object:
    """The key under which ``d`` holds ``value`` (identity), or ``_MISSING``."""
    if not _isa(d, dict):
        return _MISSING
    try:
        for k, v in dict.items(d):
            if v is value:
                return k
    except Exception:
        pass
    return _MISSING


def _index_of(seq: object, item: object) -> int | None:
    try:
        it: Iterator[object]
        if _isa(seq, list):
            it = list.__iter__(seq)
        elif _isa(seq, tuple):
            it = tuple.__iter__(seq)
        elif _isa(seq, collections.deque):
            it = collections.deque.__iter__(seq)
        else:
            return None
        for i, x in enumerate(it):
            if x is item:
                return i
    except Exception:
        pass
    return None


def _key_repr(key: object) -> str:
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
        text = f"<{_short_type(key)} key>"
    return text if len(text) <= _KEY_REPR_MAX else text[: _KEY_REPR_MAX - 1] + "…"


def _owner_dict(p: object) -> dict[object, object] | None:
    """``p.__dict__`` through the C descriptor only (a Python-level ``__dict__`` property is not called)."""
    try:
        tp = type(p)
        for klass in _type_mro(tp):
            desc = _type_dict(klass).get("__dict__")
            if desc is None:
                continue
            if type(desc) in (_GETSET, _MEMBER):
                d = desc.__get__(p, tp)
                return d if _isa(d, dict) else None
            return None
    except Exception:
        return None
    return None


def _probe_fields(p: object, c: object) -> str | None:
    """Name of a C-level field of ``p`` holding ``c``: ``__slots__`` members and other member descriptors of
    any class, getset descriptors of builtin classes only (their getters are cheap and side-effect free)."""
    try:
        tp = type(p)
        for klass in _type_mro(tp):
            builtin = _type_module(klass) == "builtins"
            for name, desc in list(_type_dict(klass).items()):
                if name in _NO_PROBE or not _isa(name, str):
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
            for name, desc in list(_type_dict(klass).items()):
                if type(desc) is not property or not _isa(name, str) or name in _NO_PROBE:
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


def _code_qualname(code: types.CodeType) -> str:
    return str(getattr(code, "co_qualname", code.co_name))


def _short_type(obj: object) -> str:
    tp = type(obj)
    try:
        mod = _type_module(tp)
        qual = _type_qualname(tp)
    except Exception:
        return "object"
    if not _isa(qual, str):
        qual = "object"
    if mod == "builtins" or not _isa(mod, str):
        return qual
    return f"{qual} ({mod})"


def _describe(obj: object) -> str:
    """A short readable name for an object on the chain (see the module docstring)."""
    try:
        tp = type(obj)
        if tp is types.FunctionType:
            return f"function {obj.__qualname__}"  # type: ignore[attr-defined]
        if tp is types.MethodType:
            func = obj.__func__  # type: ignore[attr-defined]
            qual = func.__qualname__ if _isa(func, types.FunctionType) else _short_type(func)
            return f"bound method {qual}"
        if tp in (types.BuiltinFunctionType, types.BuiltinMethodType):
            return f"builtin {obj.__qualname__}"  # type: ignore[attr-defined]
        if _isa(obj, type):
            mod = _type_module(obj)
            qual = _type_qualname(obj)
            return f"class {qual}" if mod == "builtins" else f"class {qual} ({mod})"
        if _isa(obj, types.ModuleType):
            own = _owner_dict(obj)
            name = own.get("__name__") if own is not None else None
            return f"module {name}" if _isa(name, str) else "module"
        if tp is types.CodeType:
            return f"code {_code_qualname(obj)}"  # type: ignore[arg-type]
        if tp is types.FrameType:
            return f"frame of {_code_qualname(obj.f_code)}"  # type: ignore[attr-defined]
        if tp in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
            return f"{tp.__name__} {obj.__qualname__}"  # type: ignore[attr-defined]
        if tp is _CELL:
            return "cell"
    except Exception:
        pass
    return _short_type(obj)
