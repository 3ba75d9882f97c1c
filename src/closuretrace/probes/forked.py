"""The cycle end in a snapshot child: what the profiler does before it forks, what the child counts, how the
counts are folded back (the process side is :mod:`closuretrace.probes.snapshot`).

Before forking, the profiler looks at the objects that are new since the previous cycle (:meth:`HeapProbe.new_objects
<closuretrace.probes.heap.HeapProbe.new_objects>`, a young collection and no full one) for user closures and for
instances of the types that grew in the last counted cycle, and takes weak references to them: references must
live in the profiler's process. The child collects its copy of the heap and tells which of them survived the
collection; only those are adopted (closures, with the cycle they were found in) or kept as samples, exactly
the objects an in-process probe would have found alive. The child also names the watched closures its
collection freed, so their records say the cycle they became garbage in, as an in-process probe's would.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import weakref
from types import FunctionType
from typing import TYPE_CHECKING, Any

from closuretrace.probes.base import CycleContext
from closuretrace.probes.heap import SAMPLE_PER_TYPE, SAMPLE_TYPES
from closuretrace.probes.snapshot import ChildFailed, SnapshotChild, child_timeout, prepare, unsafe_reason
from closuretrace.session import ClosureRecord, CycleSample

if TYPE_CHECKING:
    from closuretrace.profiler import Profiler

__all__ = ["ForkedProbes"]

#: Candidates taken per grown type before the child says which survived (some are garbage).
CANDIDATES_PER_TYPE = 2 * SAMPLE_PER_TYPE
#: At the end of a run stopped by SIGTERM, the last child gets at most this long.
TERMINATED_WAIT_S = 2.0


def _ignore(ref: weakref.ref[Any]) -> None:
    return None


class ForkedProbes:
    """One profiler's probes in snapshot children: the child in flight and what waits for its answer."""

    def __init__(self, prof: Profiler) -> None:
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
        if self.child is not None:
            yield self.child

    def usable(self) -> bool:
        """Whether this cycle end may fork; notes once, as an event, why probes run in process instead."""
        if self.off is None:
            reason = unsafe_reason()
            if reason is not None:
                self.off = reason
                self._prof.record_event("probes_in_process", reason=reason)
        return self.off is None

    # -- the parent, at the end of a cycle ------------------------------------------------------------------
    def begin(self, sample: CycleSample) -> bool:
        """Take the candidates among new objects, then fork the child that counts ``sample``'s cycle.

        False when the fork failed: the candidates that survive a collection are adopted, and the caller
        probes this cycle in process.
        """
        prof = self._prof
        heap = prof.heap
        wanted = dict.fromkeys(self.grown, CANDIDATES_PER_TYPE)
        names: dict[type, str | None] = {}
        find = prof.options.census
        new = heap.new_objects()
        try:
            for o in new:
                t = type(o)
                if find and t is FunctionType and heap.is_user_closure(o):
                    self.closures.append(weakref.ref(o, _ignore))
                    continue
                if not wanted:
                    continue
                name = names.get(t, "")
                if name == "":
                    name = names[t] = _name(t) if t.__weakrefoffset__ else None
                left = wanted.get(name) if name else None
                if left:
                    self.samples.append((name, weakref.ref(o, _ignore)))  # type: ignore[arg-type]
                    wanted[name] = left - 1  # type: ignore[index]
        finally:
            del new
        names.clear()
        self.cycle = prof.cycle_index
        try:
            self.child = SnapshotChild.spawn(self._work)
        except OSError as exc:
            self.off = f"fork() failed ({exc.strerror or exc})"
            prof.record_event("probe_fallback", cycle=self.cycle, reason=self.off, then="probes run in process")
            gc.collect()
            self._adopt(self.closures)
            self._drop()
            return False
        self.sample = sample
        return True

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
        if self.child is not None and outcome == "terminated":
            self.fold_in(timeout=min(self.timeout, time.monotonic() - self.child.started + TERMINATED_WAIT_S))
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


def _name(t: type) -> str:
    from closuretrace.instrument.captures import qualified_name

    return qualified_name(t)


def _grown(changes: dict[str, int], prev: dict[str, int]) -> list[str]:
    """Types whose count rose, specific ones first (a FuncGraph says more than a dict), then by growth."""
    grown = [t for t, n in changes.items() if n > prev.get(t, 0)]
    grown.sort(key=lambda t: ("." not in t, prev.get(t, 0) - changes[t]))
    return grown[:SAMPLE_TYPES]
