"""What holds the growth: every way into a set of new objects from the rest of the heap, and what each frees.

A retention chain is a *path*: one chain of references from a root to one object. It does not say that the root
keeps the growth alive; another holder may keep the same objects. This module answers the question a path
cannot: *if this holder alone let go, what would be freed?* (the idea of guppy3's ``dominos``, Eclipse MAT's and
Chrome DevTools' "retained size"), computed on the growth only, so it stays cheap on a big heap.

Given the *new objects* (tracked by gc, born after the warm-up, still alive), :class:`HolderGraph`:

1. builds the graph of references among them, plus the untracked objects (strings, arrays, untracked tuples
   and dicts) that only new objects refer to (their reference counts say so), for their bytes;
2. finds the *sources*: old objects that refer to a new one (one pass over the heap, ``gc.get_referents`` in
   chunks), and the local variables of running functions (invisible to gc). An old container (a registry dict,
   a list) is one source; a namespace is split by name: a module global, an instance attribute, a frame local
   each is its own source;
3. labels every new object with the set of sources that reach it (at most :data:`MAX_JOINT`, beyond that
   "many"), by propagation along the references: a monotone data flow, each object relabelled at most
   ``MAX_JOINT + 1`` times. An object reached from source ``s`` only is freed when ``s`` lets go (``s``
   *dominates* it: every path from the rest of the heap passes through ``s``); one reached from ``{s, t}`` is
   freed when both let go; one reached from no source is held by something gc cannot see (C code).

The graph holds the objects strongly while it exists: call :meth:`HolderGraph.release` when done.
"""

from __future__ import annotations

import gc
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from closuretrace.analysis.chain_labels import isa, owner_dict, probe_fields
from closuretrace.analysis.chain_roots import executing_frame_ids, is_own_frame, module_roots
from closuretrace.instrument.captures import nbytes_of

__all__ = ["MANY", "MAX_JOINT", "HolderGraph", "Label", "Source"]

#: Sources considered together: an object reached from more than this many is labelled :data:`MANY`.
MAX_JOINT = 3
#: The label of an object reached from more than :data:`MAX_JOINT` sources.
MANY = -1
#: A node's label: ``None`` (no source reaches it), a source index, a sorted tuple of 2..MAX_JOINT source
#: indices, or :data:`MANY`.
Label = int | tuple[int, ...] | None
_CHUNK = 1024
# Entries that are containers by nature: their members are what the program adds, one source for the whole.
_CONTAINERS = (dict, list, tuple, set, frozenset, deque, type, types.ModuleType, types.FunctionType, types.CellType)


@dataclass
class Source:
    """One way into the new objects from the rest of the heap.

    ``kind``: ``"global"`` (``name`` is ``module.key``), ``"local"`` (``name`` is ``frame of f local 'x'``),
    ``"attribute"`` (``entry`` is the instance, ``key`` the attribute) or ``"container"`` (``entry`` holds the
    targets itself). ``targets`` are node indices the source refers to directly.
    """

    kind: str
    entry: object | None
    key: str | None
    name: str
    targets: list[int] = field(default_factory=list)


class HolderGraph:
    """The new objects, the references among them, their sources and every node's :data:`Label`.

    ``new_objects`` are gc-tracked objects; the first ``counted`` of them make the growth (later ones, such as
    the last cycle's objects, are nodes of the graph but are not counted). ``ignore``: objects that are never
    sources (the tool's own containers). ``scan``: the objects that may be sources (default: every object gc
    tracks); the list is emptied.
    """

    def __init__(
        self,
        new_objects: Sequence[object],
        *,
        counted: int | None = None,
        ignore: Iterable[object] = (),
        scan: list[object] | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.nodes: list[object] = list(new_objects)
        self.n_tracked = len(self.nodes)
        self.counted = self.n_tracked if counted is None else max(0, min(counted, self.n_tracked))
        self.index: dict[int, int] = {id(o): i for i, o in enumerate(self.nodes)}
        self.succ: list[list[int]] = []
        self.sizes: list[int] = []
        #: per leaf (untracked node), whether its bytes count (a counted node refers to it)
        self.leaf_counted: list[bool] = []
        self.sources: list[Source] = []
        self.labels: list[Label] = []
        self._skip: set[int] = {id(new_objects), id(self.nodes), id(self.index), id(self.sources)}
        for o in ignore:
            self._skip.add(id(o))
        self._build_edges()
        self._find_sources(gc.get_objects() if scan is None else scan)
        self._propagate()
        self.seconds = time.perf_counter() - t0

    # -- building ------------------------------------------------------------------------------------------
    def _build_edges(self) -> None:
        nodes, index, succ, sizes = self.nodes, self.index, self.succ, self.sizes
        leaves: dict[int, object] = {}
        leaf_from: dict[int, list[int]] = {}
        get_referents, is_tracked = gc.get_referents, gc.is_tracked
        index_get, size_of = index.get, _Sizer()
        for i, o in enumerate(nodes):
            refs = get_referents(o)
            js = list(map(index_get, map(id, refs)))
            out = [j for j in js if j is not None]
            if len(out) < len(refs):
                for r, j in zip(refs, js):
                    if j is None and not is_tracked(r) and type(r) is not type:
                        rid = id(r)
                        held = leaf_from.get(rid)
                        if held is None:
                            leaves[rid] = r
                            leaf_from[rid] = [i]
                        else:
                            held.append(i)
                r = None
            del refs
            succ.append(out)
            sizes.append(size_of(o))
        # An untracked object belongs to the growth when new objects hold every reference to it: its reference
        # count is theirs plus ours (the ``leaves`` dict, the ``r`` binding and getrefcount's argument).
        getrefcount, counted = sys.getrefcount, self.counted
        r = None
        for rid, held in leaf_from.items():
            r = leaves[rid]
            if getrefcount(r) - 3 != len(held):
                continue
            j = len(nodes)
            nodes.append(r)
            index[rid] = j
            succ.append([])
            sizes.append(size_of(r))
            self.leaf_counted.append(held[0] < counted)
            for i in held:
                succ[i].append(j)
        r = None
        leaves.clear()
        leaf_from.clear()

    def _find_sources(self, everything: list[object]) -> None:
        index, skip, n_tracked = self.index, self._skip, self.n_tracked
        roots = module_roots()
        running = executing_frame_ids()
        skip.add(id(everything))
        try:
            idset = set(index)
            get_referents = gc.get_referents
            for start in range(0, len(everything), _CHUNK):
                chunk = everything[start : start + _CHUNK]
                if idset.isdisjoint(map(id, get_referents(*chunk))):
                    continue
                for o in chunk:
                    oid = id(o)
                    if oid in index or oid in skip:
                        continue
                    refs = get_referents(o)
                    if idset.isdisjoint(map(id, refs)):
                        continue
                    targets = [j for j in map(index.get, map(id, refs)) if j is not None and j < n_tracked]
                    del refs
                    if not targets:
                        continue
                    if type(o) is types.FrameType:
                        # a running frame is read below, by its local names; a finished one (kept by a
                        # traceback) is a container like any other
                        if oid not in running and not is_own_frame(o):
                            self.sources.append(Source("container", o, None, "", targets))
                        continue
                    self._add_entry(o, targets, roots)
                del chunk
        finally:
            everything.clear()
            del everything
        self._frame_sources()

    def _add_entry(self, o: object, targets: list[int], roots: dict[int, str]) -> None:
        nodes = self.nodes
        if type(o) is dict and id(o) in roots:
            mod = roots[id(o)]
            by_key: dict[str, list[int]] = {}
            for k, v in list(dict.items(o)):
                j = self.index.get(id(v))
                if j is not None and j < self.n_tracked:
                    name = k if isa(k, str) else repr(k)
                    by_key.setdefault(name, []).append(j)
            for gname, ts in by_key.items():
                self.sources.append(Source("global", None, gname, f"{mod}.{gname}", ts))
            return
        if issubclass(type(o), _CONTAINERS):
            self.sources.append(Source("container", o, None, "", targets))
            return
        attrs = owner_dict(o)
        by_attr: dict[str | None, list[int]] = {}
        for j in targets:
            key: str | None = None
            if attrs is not None:
                for k, v in list(dict.items(attrs)):
                    if v is nodes[j] and isa(k, str):
                        key = k
                        break
            if key is None:
                key = probe_fields(o, nodes[j])
            by_attr.setdefault(key, []).append(j)
        for attr, ts in by_attr.items():
            kind = "attribute" if attr is not None else "container"
            self.sources.append(Source(kind, o, attr, "", ts))

    def _frame_sources(self) -> None:
        """Local variables of running functions (other than closuretrace's) that hold new objects."""
        tops = sys._current_frames()
        top: types.FrameType | None = None
        f: types.FrameType | None = None
        try:
            for top in tops.values():
                f = top
                while f is not None:
                    if not is_own_frame(f):
                        self._frame_locals(f)
                    f = f.f_back
        finally:
            tops.clear()
            top = f = None  # a frame bound here would keep itself alive

    def _frame_locals(self, f: types.FrameType) -> None:
        try:
            items = list(f.f_locals.items())
        except Exception:
            return
        try:
            qual = getattr(f.f_code, "co_qualname", f.f_code.co_name)
            for name, value in items:
                j = self.index.get(id(value))
                if j is not None and j < self.n_tracked:
                    self.sources.append(Source("local", None, str(name), f"frame of {qual} local '{name}'", [j]))
        finally:
            items.clear()

    # -- labelling -----------------------------------------------------------------------------------------
    def _propagate(self) -> None:
        labels: list[Label] = [None] * len(self.nodes)
        succ = self.succ
        work: deque[int] = deque()
        for s, src in enumerate(self.sources):
            for t in src.targets:
                new = _merge(labels[t], s)
                if new != labels[t]:
                    labels[t] = new
                    work.append(t)
        append, pop = work.append, work.popleft
        while work:
            v = pop()
            lv = labels[v]
            for w in succ[v]:
                lw = labels[w]
                if lw in (lv, MANY):
                    continue
                new = _merge(lw, lv)
                if new != lw:
                    labels[w] = new
                    append(w)
        self.labels = labels

    # -- reading -------------------------------------------------------------------------------------------
    def tally(self, count: Callable[[object], bool] | None = None) -> tuple[dict[Label, int], dict[Label, int]]:
        """Per label, the counted objects (those ``count`` accepts, every one without it) and the counted bytes
        (every counted node and leaf, whatever ``count`` says)."""
        objects: dict[Label, int] = {}
        nbytes: dict[Label, int] = {}
        labels, nodes, sizes = self.labels, self.nodes, self.sizes
        for i in range(self.counted):
            lab = labels[i]
            nbytes[lab] = nbytes.get(lab, 0) + sizes[i]
            if count is None or count(nodes[i]):
                objects[lab] = objects.get(lab, 0) + 1
        for k, ok in enumerate(self.leaf_counted):
            if ok:
                i = self.n_tracked + k
                lab = labels[i]
                nbytes[lab] = nbytes.get(lab, 0) + sizes[i]
        return objects, nbytes

    def path_to(self, source: int, want: Callable[[object], bool]) -> list[object]:
        """A shortest path of nodes from one of ``source``'s targets to the earliest-born counted node ``want``
        accepts, through nodes ``source`` reaches; the first target when there is none."""
        labels, succ, nodes, counted = self.labels, self.succ, self.nodes, self.counted
        targets = self.sources[source].targets
        parent: dict[int, int] = {}
        seen = set(targets)
        queue = deque(targets)
        hit: int | None = None
        while queue:
            v = queue.popleft()
            if v < counted and (hit is None or v < hit) and want(nodes[v]):
                hit = v
            for w in succ[v]:
                if w not in seen and _reaches(labels[w], source):
                    seen.add(w)
                    parent[w] = v
                    queue.append(w)
        if hit is None:
            return [nodes[targets[0]]] if targets else []
        chain = [hit]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        return [nodes[i] for i in reversed(chain)]

    def release(self) -> None:
        """Drop every reference the graph holds."""
        for s in self.sources:
            s.entry = None
            s.targets = []
        self.sources.clear()
        self.nodes.clear()
        self.index.clear()
        self.succ.clear()
        self.sizes.clear()
        self.labels.clear()

    def own_objects(self) -> list[object]:
        """The graph's own containers (never links of a chain search)."""
        return [self, self.nodes, self.index, self.succ, self.sources, self.labels, self.__dict__, *self.sources]


def _merge(a: Label, b: Label) -> Label:
    """The union of two labels, capped at :data:`MAX_JOINT` sources."""
    if a is None:
        return b
    if b is None or a in (b, MANY):
        return a
    if b == MANY:
        return MANY
    sa = (a,) if isinstance(a, int) else a
    sb = (b,) if isinstance(b, int) else b
    union = tuple(sorted(set(sa) | set(sb)))
    return MANY if len(union) > MAX_JOINT else union


def _reaches(label: Label, source: int) -> bool:
    return label == source or (isinstance(label, tuple) and source in label)


class _Sizer:
    """Shallow bytes of an object, plus an array's or tensor's data where that is knowable without copying;
    how to size each type is decided once per type."""

    def __init__(self) -> None:
        self._how: dict[type, int] = {}

    def __call__(self, o: object) -> int:
        tp = type(o)
        how = self._how.get(tp)
        if how is None:
            how = self._how[tp] = _how(tp)
        try:
            if how == _GETSIZEOF:
                return sys.getsizeof(o)
            if how == _TENSOR:
                nb = nbytes_of(o)
                return object.__sizeof__(o) + (nb or 0)
            return int(tp.__basicsize__)
        except Exception:
            return 0


_GETSIZEOF, _TENSOR, _BASIC = 0, 1, 2


def _how(tp: type) -> int:
    try:
        native = str(tp.__module__).startswith(("tensorflow", "jax", "jaxlib"))
        if native and tp.__name__ in ("EagerTensor", "ArrayImpl"):
            return _TENSOR
        sizeof = tp.__sizeof__
        # a C __sizeof__ (NumPy's counts the array's own data); a Python one is the program's code: not run
        return _GETSIZEOF if isinstance(sizeof, (types.MethodDescriptorType, types.WrapperDescriptorType)) else _BASIC
    except Exception:
        return _BASIC
