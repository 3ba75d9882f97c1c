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

import gc
import time
import types
from collections.abc import Iterable
from dataclasses import dataclass

from closuretrace.analysis.chain_labels import dict_key_of, isa, key_repr, label_path
from closuretrace.analysis.chain_roots import executing_frame_ids, frame_fallback, is_own_frame, module_roots

__all__ = ["ChainResult", "RootPath", "find_chain", "find_root_path"]

#: Frontier sizes up to this use ``gc.get_referrers``; above it a forward pass over ``gc.get_objects``
#: (cost independent of the frontier size) is cheaper.
_REFERRERS_MAX_FRONTIER = 128
#: Objects per ``gc.get_referents(*chunk)`` call in the forward pass.
_CHUNK = 1024
#: How often (in loop iterations) long loops look at the clock.
_CLOCK_EVERY = 256


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
    found = find_root_path(target, ignore=ignore, max_depth=max_depth, timeout=timeout, max_frontier=max_frontier)
    hops = label_path(found.path, found.root) if found.found and found.root is not None else []
    found.path.clear()
    return ChainResult(found=found.found, hops=hops, root=found.root, note=found.note, seconds=time.perf_counter() - t0)


@dataclass
class RootPath:
    """What :func:`find_root_path` found: the objects of the chain, root's child first, ``target`` last.

    It holds the chain's objects strongly: label them (:func:`~closuretrace.analysis.chain_labels.label_path`
    empties the list) or clear ``path`` as soon as they are read.
    """

    found: bool
    path: list[object]
    root: str | None
    note: str | None


def find_root_path(
    target: object,
    *,
    ignore: Iterable[object] = (),
    max_depth: int = 25,
    timeout: float = 5.0,
    max_frontier: int = 5000,
) -> RootPath:
    """:func:`find_chain`'s search, returning the chain's objects rather than their labels (same options)."""
    deadline = time.perf_counter() + max(0.0, float(timeout))
    skip: set[int] = {id(ignore), id(gc.garbage)}
    try:
        skip.update(map(id, ignore))
    except Exception:
        pass
    try:
        path, root, note, found = _find(target, skip, max(0, max_depth), deadline, max(1, max_frontier), timeout)
    finally:
        skip.clear()
    return RootPath(found=found, path=path, root=root, note=note)


# --------------------------------------------------------------------------------------------- search


def _child_of(r: object, frontier_ids: set[int] | dict[int, int]) -> int | None:
    """The id of the first object of the frontier that ``r`` refers to directly."""
    for x in gc.get_referents(r):
        i = id(x)
        if i in frontier_ids:
            return i
    return None


def _find(
    target: object, skip: set[int], max_depth: int, deadline: float, max_frontier: int, timeout: float
) -> tuple[list[object], str | None, str | None, bool]:
    nodes: dict[int, object] = {id(target): target}  # everything seen, kept alive for the search only
    down: dict[int, int] = {}  # referrer id -> id of the object it holds, one hop nearer the target
    depth: dict[int, int] = {id(target): 0}
    frontier: list[object] = [target]
    found_refs: list[object] = []
    nxt: list[object] = []
    weak_next: list[object] = []
    own = (id(nodes), id(down), id(depth), id(frontier), id(found_refs), id(nxt), id(weak_next))
    skip.update(own)
    roots = module_roots()
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
                    key = dict_key_of(r, nodes[child])
                    private = not (isa(key, str) and not key.startswith("_"))
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
                    if is_own_frame(r):
                        continue
                    if executing is None:
                        executing = executing_frame_ids()
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
            key = dict_key_of(root_dict, nodes[root_child])
            root = f"{root_name}.{key}" if isa(key, str) else f"{root_name}[{key_repr(key)}]"
            return _path(nodes, down, root_child, id(target)), root, None, True

        if timed_out:
            note = f"search stopped at the time limit ({timeout:g} s) after {level} hop(s) and {len(nodes)} object(s)"
        if capped and note is not None:
            note += f"; at most {max_frontier} objects were followed per hop, some paths were not"
        if not timed_out:
            fallback = frame_fallback(depth, skip)
            if fallback is not None:
                root, child = fallback
                path = _path(nodes, down, child, id(target))
                within = f" within {max_depth} hops" if level >= max_depth else ""
                why = f"no module global holds it{within}; a local variable of a running function does"
                if capped:
                    why += f" (at most {max_frontier} objects were followed per hop)"
                return path, root, why, True
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
