"""One pass over the gc heap per cycle: object count, type census, user closures, and samples of new objects.

The tool's own containers are subtracted from every count (they are enumerated, not guessed), so the numbers
are those of the program alone. Samples are weak references: a sampled object is never kept alive.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import sysconfig
import types
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from closuretrace.instrument.captures import qualified_name

_FunctionType = types.FunctionType
_TOOL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: At most this many types are sampled per cycle, this many instances each.
SAMPLE_TYPES = 40
SAMPLE_PER_TYPE = 3


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return tuple(sorted(os.path.join(os.path.realpath(r), "") for r in roots if r))


class CodeFilter:
    """Decides whether a closure's code is the user's: not the tool's, not the stdlib's or site-packages'."""

    def __init__(self, include_libraries: bool = False) -> None:
        self.include_libraries = include_libraries
        self._roots = _library_roots()
        self._cache: dict[str, bool] = {}

    def __call__(self, filename: str, module: str | None = None) -> bool:
        key = filename if not filename.startswith("<") else f"{filename}|{module}"
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if filename.startswith("<") and module and module != "__main__":
            # Generated code (dataclass __init__, exec'd templates) belongs to the module that made it.
            mod_file = getattr(sys.modules.get(module), "__file__", None)
            # A module without a file was made by exec() in the program itself: user code.
            ok = self(mod_file, None) if isinstance(mod_file, str) else True
        else:
            real = os.path.realpath(filename) if not filename.startswith("<") else filename
            if real.startswith(os.path.join(_TOOL_DIR, "")):
                ok = False
            elif filename.startswith("<frozen") or self.include_libraries:
                ok = self.include_libraries
            else:
                ok = not real.startswith(self._roots)
        self._cache[key] = ok
        return ok


def _ignore(ref: weakref.ref[Any]) -> None:
    return None


@dataclass
class HeapReading:
    gc_objects: int
    by_type: dict[str, int]
    #: live type objects -> count; transient (holds types, not instances), never stored in a session
    type_objects: Counter[type]
    #: user closures found alive; transient: the caller registers them and drops the list
    closures: list[Any] = field(default_factory=list)


class HeapProbe:
    """Counts the heap and samples instances of types that grew, for retention chains later."""

    def __init__(self, own: Callable[[], Iterable[Any]], code_filter: CodeFilter) -> None:
        self._own = own
        self._filter = code_filter
        self._prev: Counter[type] = Counter()
        self._unweakrefable: set[type] = set()
        #: type name -> [(cycle, weak reference)] of instances seen alive at the end of that cycle
        self.samples: dict[str, list[tuple[int, weakref.ref[Any]]]] = {}
        # Markers: empty lists of ours, made just before each full collection. A full collection merges every
        # survivor into the oldest generation, appending the younger ones, so everything after the previous
        # marker in gc.get_objects() is new since the previous cycle: scans of new objects cost what changed.
        self._marker: list[Any] | None = None
        self._pending: list[Any] | None = None
        #: id -> weak reference of each user closure alive when :meth:`take_baseline` ran (never adopted)
        self._baseline: dict[int, weakref.ref[Any]] = {}

    def take_baseline(self) -> None:
        """Remember the user closures alive now, so they are never adopted: a test is judged only on the
        closures it makes, not on module-level ones or those an earlier test leaked."""
        keep, base = self._filter, self._baseline
        objs = gc.get_objects()
        try:
            for o in objs:
                if type(o) is _FunctionType and o.__closure__ is not None and keep(
                    o.__code__.co_filename, o.__module__
                ):
                    base[id(o)] = weakref.ref(o, _ignore)
        finally:
            del objs

    def is_baseline(self, obj: Any) -> bool:
        """Whether ``obj`` was alive when :meth:`take_baseline` ran."""
        ref = self._baseline.get(id(obj))
        return ref is not None and ref() is obj

    def collect(self) -> None:
        """A full garbage collection, which every reading needs; places this cycle's marker first."""
        self._pending = []
        gc.collect()

    def _new_since_last(self, objs: list[Any]) -> int:
        """Index in ``objs`` of the first object that survived since the previous cycle's collection."""
        marker, self._marker, self._pending = self._marker, self._pending, None
        if marker is None:
            return 0
        for i in range(len(objs) - 1, -1, -1):
            if objs[i] is marker:
                return i + 1
        return 0  # not found (the program froze or unfroze the gc): scan everything

    def own_objects(self) -> Iterable[Any]:
        if self._marker is not None:
            yield self._marker
        if self._pending is not None:
            yield self._pending
        yield self.samples
        yield self._unweakrefable
        yield self._baseline
        yield from self._baseline.values()
        for lst in self.samples.values():
            yield lst
            for entry in lst:
                yield entry
                yield entry[1]

    def count(self, objs: list[Any], extra_own: Iterable[Any] = ()) -> tuple[Counter[type], int]:
        """Instances per type in ``objs`` and their total, the tool's own containers (and ``extra_own``) left out."""
        counts: Counter[type] = Counter(map(type, objs))
        own = itertools.chain(self._own(), self.own_objects(), extra_own, (extra_own,))
        mine = {id(o): o for o in own if gc.is_tracked(o)}
        counts.subtract(Counter(map(type, mine.values())))
        del mine
        counts = +counts  # drops zero and negative entries
        return counts, sum(counts.values())

    def census(self, extra_own: Iterable[Any] = ()) -> HeapReading:
        """Count the heap as it is (call :meth:`collect` or ``gc.collect()`` first); no closures, no samples.

        This is what a snapshot child runs on its copy of the heap (:mod:`closuretrace.probes.forked`).
        """
        objs = gc.get_objects()
        try:
            counts, total = self.count(objs, extra_own)
        finally:
            del objs
        by_type = {sys.intern(qualified_name(t)): n for t, n in counts.items()}
        return HeapReading(gc_objects=total, by_type=by_type, type_objects=counts)

    def is_user_closure(self, o: Any) -> bool:
        """Whether ``o`` is a closure of the user's code that the census should adopt."""
        return (
            type(o) is _FunctionType
            and o.__closure__ is not None
            and self._filter(o.__code__.co_filename, o.__module__)
            and not (self._baseline and self.is_baseline(o))
        )

    def measure(self, cycle: int, find_closures: bool = True, sample: bool = True) -> HeapReading:
        """Count the heap. Call :meth:`collect` first; closures and samples are looked for among new objects."""
        objs = gc.get_objects()
        try:
            counts, total = self.count(objs)
            start = self._new_since_last(objs)
            closures: list[Any] = []
            if find_closures:
                closures = [
                    o for o in itertools.islice(objs, start, None)
                    if type(o) is _FunctionType and self.is_user_closure(o)
                ]
            if sample:
                self._sample(cycle, counts, objs, start)
            self._prev = counts
            by_type = {sys.intern(qualified_name(t)): n for t, n in counts.items()}
            return HeapReading(gc_objects=total, by_type=by_type, type_objects=counts, closures=closures)
        finally:
            del objs

    def _sample(self, cycle: int, counts: Counter[type], objs: list[Any], start: int) -> None:
        prev = self._prev
        grown = [
            t for t, n in counts.items()
            if n > prev.get(t, 0) and t not in self._unweakrefable
        ]
        # Specific types first: a FuncGraph says more than a dict.
        grown.sort(key=lambda t: (t.__module__ == "builtins", prev.get(t, 0) - counts[t]))
        wanted = {t: SAMPLE_PER_TYPE for t in grown[:SAMPLE_TYPES]}
        if not wanted:
            return
        # Only objects new since the previous cycle, newest first.
        for i in range(len(objs) - 1, start - 1, -1):
            o = objs[i]
            t = type(o)
            left = wanted.get(t)
            if not left:
                continue
            try:
                # With a callback the reference is always a new object of ours, never one the program shares.
                ref = weakref.ref(o, _ignore)
            except TypeError:
                self._unweakrefable.add(t)
                del wanted[t]
                continue
            self.samples.setdefault(qualified_name(t), []).append((cycle, ref))
            if left == 1:
                del wanted[t]
                if not wanted:
                    break
            else:
                wanted[t] = left - 1
