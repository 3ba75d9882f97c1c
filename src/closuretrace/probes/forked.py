"""The cycle end in a snapshot child: what the profiler does before it forks, what the child counts, how the
counts are folded back (the process side is :mod:`closuretrace.probes.snapshot`).

The profiler's own process must not walk its whole heap at a cycle end (after a fork, every page it touches is
copied or at least faulted in), yet weak references to newly found closures and to sampled instances must be
made there. So a gc callback, :class:`YoungWatch`, looks at the objects of the two young generations whenever a
collection is about to move the survivors into the oldest one: every object that lives past a young collection
passes it once. It keeps weak references to user closures and to instances of the types that grew in the last
counted cycle. At the cycle end a collection of the young generations passes the rest, and the child, which
collects its copy of the heap, says which of these candidates survived a full collection: only those are adopted
(closures, with the cycle they were found in) or kept as samples, the objects an in-process probe would have
found alive. The child also names the watched closures its collection freed, so their records say the cycle they
became garbage in, as an in-process probe's would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import time
import warnings
import weakref
from collections import deque
from itertools import compress
from types import FunctionType
from typing import Any

from closuretrace.probes.base import CycleContext
from closuretrace.probes.heap import SAMPLE_PER_TYPE, SAMPLE_TYPES, HeapProbe
from closuretrace.probes.snapshot import ChildFailed, SnapshotChild, child_timeout, prepare, unsafe_reason
from closuretrace.session import ClosureRecord, CycleSample

__all__ = ["ForkedProbes"]

#: Below this many gc-tracked objects at the first cycle end, the whole run probes in process: collecting and
#: counting a small heap costs less than a fork (``CLOSURETRACE_SNAPSHOT_MIN_OBJECTS`` overrides).
MIN_OBJECTS = 100_000


def min_objects() -> int:
    """The heap size (gc-tracked objects) from which cycle ends fork."""
    try:
        return max(0, int(os.environ.get("CLOSURETRACE_SNAPSHOT_MIN_OBJECTS", "")))
    except ValueError:
        return MIN_OBJECTS


#: Candidates taken per grown type before the child says which survived (some are garbage).
CANDIDATES_PER_TYPE = 2 * SAMPLE_PER_TYPE
#: At the end of a run stopped by SIGTERM or Ctrl-C, the last child gets at most this much longer.
STOPPING_WAIT_S = 2.0


def _ignore(ref: weakref.ref[Any]) -> None:
    return None


class ForkedProbes:
    """One profiler's probes in snapshot children: the child in flight and what waits for its answer."""

    def __init__(self, prof: Any) -> None:  # the Profiler that owns these probes (probes never import it)
        self._prof = prof
        self.child: SnapshotChild | None = None
        #: the cycle whose child is in flight
        self.cycle = -1
        self.sample: CycleSample | None = None
        self.closures: list[weakref.ref[Any]] = []
        self.samples: list[tuple[str, weakref.ref[Any]]] = []
        #: serial -> the cycle at whose end a child's collection freed that watched closure
        self.freed: dict[int, int] = {}
        #: types that grew in the last cycle counted, most specific first: the next cycle samples them
        self.grown: list[str] = []
        #: why the cycle ends run in process (from the first failure or unsafe condition on)
        self.off: str | None = "--probe-in-process" if prof.options.probe_in_process else None
        self.timeout = child_timeout()
        self.watch: YoungWatch | None = None
        self._sized = False
        self._work = self._child_work  # one bound method, made once: the child's heap holds it too
        if self.off is None:
            prepare()  # now, not in the first cycle's readings

    def own_objects(self) -> Any:
        yield self
        yield self._work
        yield self.closures
        yield from self.closures
        yield self.samples
        for entry in self.samples:
            yield entry
            yield entry[1]
        yield self.freed
        yield self.grown
        if self.watch is not None:
            yield from self.watch.own_objects()
        if self.child is not None:
            yield self.child

    def usable(self) -> bool:
        """Whether this cycle end may fork; notes once, as an event, why probes run in process instead."""
        if self.off is None and self.watch is None and self.cycle == -1 and not self._sized:
            self._sized = True
            n = len(gc.get_objects())
            least = min_objects()
            if n < least:
                self.off = f"a small heap ({n:,} objects, under {least:,}): probing in process costs less"
                self._prof.record_event("probes_in_process", reason=self.off)
        if self.off is None:
            reason = unsafe_reason()
            if reason is not None:
                self.off = reason
                self.unwatch()
                self._prof.record_event("probes_in_process", reason=reason)
        return self.off is None

    # -- the parent, at the end of a cycle ------------------------------------------------------------------
    def begin(self, sample: CycleSample) -> bool:
        """Take the candidates found since the last cycle end, then fork the child that counts ``sample``'s cycle.

        False when the fork failed: the candidates that survive a collection are adopted, and the caller
        probes this cycle in process.
        """
        prof = self._prof
        watch = self.watch
        if watch is None:
            watch = self.watch = YoungWatch(prof.heap, prof.options.census)
            gc.callbacks.append(watch)
            objs = gc.get_objects()  # once: what the program made before the first cycle end
            try:
                watch.look(objs)
            finally:
                del objs
        gc.collect(1)  # the young survivors pass the watch on their way to the oldest generation
        self.closures, self.samples = watch.harvest()
        watch.want(self.grown)
        self.cycle = prof.cycle_index
        try:
            with warnings.catch_warnings():
                # JAX (and Python >= 3.12) warn on any fork of a threaded process; the child never calls into them.
                warnings.filterwarnings("ignore", r".*(fork|multi-threaded)", RuntimeWarning)
                warnings.filterwarnings("ignore", r".*(fork|multi-threaded)", DeprecationWarning)
                self.child = SnapshotChild.spawn(self._work)
        except OSError as exc:
            self.off = f"fork() failed ({exc.strerror or exc})"
            prof.record_event("probe_fallback", cycle=self.cycle, reason=self.off, then="probes run in process")
            self.unwatch()
            gc.collect()
            self._adopt(self.closures)
            self._drop()
            return False
        self.sample = sample
        return True

    def unwatch(self) -> None:
        """Remove the gc callback (when probes move in process, and at the end of the run)."""
        watch, self.watch = self.watch, None
        if watch is not None and watch in gc.callbacks:
            gc.callbacks.remove(watch)

    def fold_in(self, *, timeout: float | None = None) -> None:
        """Wait (bounded) for the child in flight and put its counts into its cycle; on failure, say so and
        probe in process from now on."""
        child, sample = self.child, self.sample
        if child is None or sample is None:
            return
        self.child = self.sample = None
        if not child.ours:  # a process the program forked: the counts are its parent's to read
            child.close()
            self._drop()
            return
        try:
            out = child.result(self.timeout if timeout is None else timeout)
        except ChildFailed as exc:
            self._failed(sample, str(exc))
            return
        except BaseException:  # Ctrl-C or SIGTERM while waiting: the child was killed; say so, then stop
            self._failed(sample, "the run was stopped while the probe child counted; it was killed")
            raise
        self._apply(sample, out)

    def _apply(self, sample: CycleSample, out: dict[str, Any]) -> None:
        prof = self._prof
        sample.metrics.update(out["metrics"])
        sample.closures_alive_by_factory = dict(out["by_factory"])
        changes: dict[str, int] = out["census"]
        prev = prof._census_now
        self.grown = _grown(changes, prev)
        prof._census_changes.append(changes)
        now = {**prev, **changes}
        prof._census_now = {t: n for t, n in now.items() if n}
        self.freed.update(dict.fromkeys(out["freed"], self.cycle))
        self._adopt([self.closures[i] for i in out["closures"]])
        kept: dict[str, int] = {}
        for i in out["samples"]:
            name, ref = self.samples[i]
            if kept.get(name, 0) < SAMPLE_PER_TYPE and ref() is not None:
                kept[name] = kept.get(name, 0) + 1
                prof.heap.samples.setdefault(name, []).append((self.cycle, ref))
        self._drop()

    def _failed(self, sample: CycleSample, reason: str) -> None:
        """The child gave nothing: its cycle has no heap counts; collect here and keep what survives."""
        prof = self._prof
        self.off = reason
        prof.record_event("probe_fallback", cycle=self.cycle, reason=reason, then="probes run in process")
        self.unwatch()
        prof._census_changes.append({})  # the census of that cycle is unknown: no change is recorded
        gc.collect()
        self._adopt(self.closures)
        self._drop()

    def _adopt(self, refs: list[weakref.ref[Any]]) -> None:
        registry = self._prof.registry
        for ref in refs:
            obj = ref()
            if obj is not None and registry.lookup(obj) is None:
                registry.register(obj, source="census", tool_refs=1).created_cycle = self.cycle
            del obj

    def _drop(self) -> None:
        self.closures = []
        self.samples = []
        self.cycle = -1

    def stop(self, outcome: str) -> None:
        """At the end of the run: the last child's counts (bounded; short when the run was terminated)."""
        self.unwatch()
        if self.child is not None and outcome in ("terminated", "interrupted"):
            self.fold_in(timeout=min(self.timeout, time.monotonic() - self.child.started + STOPPING_WAIT_S))
        self.fold_in()

    def records(self, records: list[ClosureRecord]) -> list[ClosureRecord]:
        """``records`` with the cycle a child's collection freed each one in (copies; the live ones unchanged)."""
        out = []
        for rec in records:
            cycle = self.freed.get(rec.serial)
            if cycle is not None and (rec.collected_cycle is None or rec.collected_cycle > cycle):
                rec = dataclasses.replace(rec, collected_cycle=cycle)
            out.append(rec)
        return out

    # -- the child ----------------------------------------------------------------------------------------------
    def _child_work(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        prof = self._prof
        if self.watch in gc.callbacks:
            gc.callbacks.remove(self.watch)
        gc.collect()
        reading = prof.heap.census(self.own_objects())
        registry = prof.registry
        survivors = [i for i, ref in enumerate(self.closures) if ref() is not None]
        for i in survivors:
            registry.register(self.closures[i](), source="census")
        ctx = CycleContext(reading.type_objects, reading.gc_objects, registry.alive_count())
        metrics: dict[str, float] = {}
        for probe in prof.probes:
            if probe.needs_heap and probe.applies():
                metrics.update(probe.read(ctx))
        del ctx
        last = prof._census_now
        by_type = reading.by_type
        changes = {t: n for t, n in by_type.items() if last.get(t) != n}
        changes.update((t, 0) for t in last if t not in by_type)
        return {
            "metrics": metrics,
            "by_factory": registry.alive_by_factory(),
            "census": changes,
            "closures": survivors,
            "samples": [i for i, (_, ref) in enumerate(self.samples) if ref() is not None],
            "freed": [r.serial for r in registry.records if r.collected_cycle == self.cycle],
            "seconds": time.perf_counter() - t0,
        }


class _Interesting(dict[type, str]):
    """type -> its name where its instances are looked at (functions, and the wanted types that take weak
    references), else ``""``; filled on first sight, so the watch's filter runs at C speed."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def __missing__(self, t: type) -> str:
        name = ""
        if t is FunctionType:
            name = "function"
        elif t.__weakrefoffset__:
            full = _name(t)
            name = full if full in self.names else ""
        self[t] = name
        return name


class YoungWatch:
    """A gc callback: at the start of each collection of a young generation into the oldest, takes weak
    references to the user closures and to instances of wanted types among the young objects."""

    def __init__(self, heap: HeapProbe, census: bool) -> None:
        self._heap = heap
        self._census = census
        self._pid = os.getpid()
        self._filter = _Interesting(set())
        self.closures: dict[int, weakref.ref[Any]] = {}
        self.samples: dict[str, deque[weakref.ref[Any]]] = {}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info.get("generation", 0) >= 1:
            if os.getpid() != self._pid:  # a process the program forked: it never harvests, so never watch there
                with contextlib.suppress(ValueError):
                    gc.callbacks.remove(self)
                return
            try:
                self.look(gc.get_objects(generation=0) + gc.get_objects(generation=1))
            except Exception:  # never in the program's way
                pass

    def look(self, objs: list[Any]) -> None:
        kinds = self._filter
        for o in compress(objs, map(kinds.__getitem__, map(type, objs))):
            name = kinds[type(o)]
            if name == "function":
                if self._census and self._heap.is_user_closure(o):
                    ref = self.closures.get(id(o))
                    if ref is None or ref() is not o:
                        self.closures[id(o)] = weakref.ref(o, _ignore)
            else:
                found = self.samples.get(name)
                if found is None:
                    found = self.samples[name] = deque(maxlen=CANDIDATES_PER_TYPE)
                found.append(weakref.ref(o, _ignore))

    def want(self, names: list[str]) -> None:
        """Sample instances of these types from now on."""
        self._filter = _Interesting(set(names))

    def harvest(self) -> tuple[list[weakref.ref[Any]], list[tuple[str, weakref.ref[Any]]]]:
        """The candidates still alive, newest samples first; the watch starts afresh."""
        closures, self.closures = self.closures, {}
        samples, self.samples = self.samples, {}
        alive = [r for r in closures.values() if r() is not None]
        picked = [(name, r) for name, refs in samples.items() for r in reversed(refs) if r() is not None]
        return alive, picked

    def own_objects(self) -> Any:
        yield self
        yield self._filter
        yield self._filter.names
        # Copies: a collection (and so this watch) may run while the caller iterates.
        yield self.closures
        yield from list(self.closures.values())
        yield self.samples
        for refs in list(self.samples.values()):
            yield refs
            yield from refs


def _name(t: type) -> str:
    from closuretrace.instrument.captures import qualified_name

    return qualified_name(t)


def _grown(changes: dict[str, int], prev: dict[str, int]) -> list[str]:
    """Types whose count rose, specific ones first (a FuncGraph says more than a dict), then by growth."""
    grown = [t for t, n in changes.items() if n > prev.get(t, 0)]
    grown.sort(key=lambda t: ("." not in t, prev.get(t, 0) - changes[t]))
    return grown[:SAMPLE_TYPES]
