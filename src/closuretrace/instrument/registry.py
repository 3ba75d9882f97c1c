"""The closure registry: every watched callable gets a stable serial and a weak reference, nothing more.

Ids are addresses and CPython reuses them as soon as an object is freed, so liveness is tracked with
``weakref.ref`` callbacks, never by comparing ids. When a new callable takes the id of a dead one the record
says so (``reused_id_of``): alternating ids in a loop are the sign that old closures *were* freed.

The registry never holds a strong reference to what it watches; a test proves it.

Only callables are recorded: a tracked factory that returns something else (a number, ``None``, a tuple of
losses) is not a closure factory, and what it returned is not listed as a closure. The first such return of
each factory and type is noted as a ``not_callable`` event of the run instead.
"""

from __future__ import annotations

import itertools
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from closuretrace.instrument.captures import (
    describe_callable,
    describe_captures,
    factory_of,
    qualified_name,
    short_args,
)
from closuretrace.session import ClosureRecord
from closuretrace.session.model import Source


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference that carries its record and the object's id, so no side table is needed."""

    __slots__ = ("oid", "record")
    oid: int
    record: ClosureRecord


class ClosureRegistry:
    """Records callables weakly. ``clock()`` returns the index of the cycle now running; ``on_event(kind,
    **detail)`` receives what the registry notices besides records (a factory that returned a non-callable)."""

    def __init__(self, clock: Callable[[], int], on_event: Callable[..., None] | None = None) -> None:
        self._clock = clock
        self._on_event = on_event
        self._records: list[ClosureRecord] = []
        self._serials = itertools.count(1)
        # id(obj) -> weak reference (carrying the record) for watched objects that are alive.
        self._live: dict[int, _Ref] = {}
        # id -> serial of the last watched object that died at that address.
        self._dead_ids: dict[int, int] = {}
        self.id_reuses = 0
        # (factory, type) of non-callables that tracked factories returned, each noted once as an event.
        self._not_callable: set[tuple[str, str]] = set()
        # One bound method for every weak reference's callback (a new one per reference would be garbage of ours).
        self._callback = self._collected

    # -- recording ---------------------------------------------------------------------------------------
    def lookup(self, obj: Any) -> ClosureRecord | None:
        """The record of ``obj`` if it is watched and alive (an id match alone is not enough)."""
        ref = self._live.get(id(obj))
        if ref is not None and ref() is obj:
            return ref.record
        return None

    def register(
        self,
        obj: Any,
        *,
        source: Source,
        factory: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        created_at: str | None = None,
        role: str | None = None,
        tool_refs: int = 0,
    ) -> ClosureRecord:
        """Watch ``obj`` (once: a second call returns the existing record, adding ``role``).

        ``tool_refs`` is how many references the caller's own frames hold to ``obj`` (a local variable, a list
        being walked), so the refcount recorded is the one seen from outside the tool. Tracked factories call
        this on every call: the body stays flat.
        """
        if not callable(obj):
            return self._skip(obj, source, factory)
        oid = id(obj)
        ref = self._live.get(oid)
        if ref is not None and ref() is obj:
            rec = ref.record
            if role and role not in rec.roles:
                rec.roles.append(role)
            return rec
        qualname, module, kind = describe_callable(obj)
        # Positional: this runs on every call of a tracked factory. getrefcount's own argument and this
        # frame's ``obj`` are ours too (the 2).
        rec = ClosureRecord(
            next(self._serials),  # atomic: threads that register at once get distinct serials
            oid,
            factory or factory_of(qualname, module),
            qualname,
            module,
            kind,
            source,
            self._clock(),
            None,
            created_at,
            short_args(args, kwargs or {}) if (args or kwargs) else [],
            describe_captures(obj),
            sys.getrefcount(obj) - 2 - tool_refs,
            roles=[role] if role else [],
        )
        dead = self._dead_ids.pop(oid, None)
        if dead is not None:
            rec.reused_id_of = dead
            self.id_reuses += 1
        try:
            ref = _Ref(obj, self._callback)
        except TypeError:
            rec.weakrefable = False
        else:
            ref.oid = oid
            ref.record = rec
            self._live[oid] = ref
        self._records.append(rec)
        return rec

    def _skip(self, obj: Any, source: Source, factory: str | None) -> ClosureRecord:
        """A non-callable: note it once per factory and type; return a record that is not kept."""
        tname = qualified_name(type(obj))
        name = factory or tname
        key = (name, tname)
        if key not in self._not_callable:
            self._not_callable.add(key)
            if self._on_event is not None:
                self._on_event("not_callable", factory=name, type=tname, source=source)
        clock = self._clock()
        return ClosureRecord(0, id(obj), name, tname, "", "not callable", source, clock, None, weakrefable=False)

    def _collected(self, ref: _Ref) -> None:
        rec = ref.record
        if rec.collected_cycle is not None:
            return
        rec.collected_cycle = self._clock()
        if self._live.get(ref.oid) is ref:
            del self._live[ref.oid]
        self._dead_ids[ref.oid] = rec.serial

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def records(self) -> list[ClosureRecord]:
        return self._records

    def alive(self) -> Iterator[tuple[ClosureRecord, Any]]:
        """Yield ``(record, object)`` for watched objects still alive. Callers must drop the object soon."""
        for ref in list(self._live.values()):
            obj = ref()
            if obj is not None:
                yield ref.record, obj

    def alive_by_factory(self) -> dict[str, int]:
        # A snapshot first: a weak reference's callback (gc in another thread, or an allocation here) may
        # change the dict while this iterates.
        counts = Counter(ref.record.factory for ref in list(self._live.values()))
        return dict(counts)

    def alive_count(self) -> int:
        return len(self._live)

    def finish(self) -> None:
        """Record refcounts at the end of the run, then drop every weak reference."""
        for ref in list(self._live.values()):
            obj = ref()
            if obj is not None:
                ref.record.refcount_at_end = sys.getrefcount(obj) - 2
            del obj
        self._live.clear()

    def own_objects(self) -> Iterator[Any]:
        """The gc-tracked containers the registry itself holds, so scans can leave them out."""
        yield self._records
        yield self._live
        yield self._dead_ids
        yield self._not_callable
        yield self._callback
        if self._on_event is not None:
            yield self._on_event
        # Snapshots: another thread may register a closure while a cycle ends.
        for rec in list(self._records):
            yield rec
            yield rec.args
            yield rec.captures
            yield rec.roles
            yield from rec.captures
        yield from list(self._live.values())
