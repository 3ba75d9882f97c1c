"""The closure registry: every watched callable gets a stable serial and a weak reference, nothing more.

Ids are addresses and CPython reuses them as soon as an object is freed, so liveness is tracked with
``weakref.ref`` callbacks, never by comparing ids. When a new callable takes the id of a dead one the record
says so (``reused_id_of``): alternating ids in a loop are the sign that old closures *were* freed.

The registry never holds a strong reference to what it watches; a test proves it.
"""

from __future__ import annotations

import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from closuretrace.instrument.captures import describe_callable, describe_captures, factory_of, short_args
from closuretrace.session import ClosureRecord


class ClosureRegistry:
    """Records callables weakly. ``clock()`` returns the index of the cycle now running."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._records: list[ClosureRecord] = []
        # id(obj) -> (weak reference, record) for watched objects that are alive.
        self._live: dict[int, tuple[weakref.ref[Any], ClosureRecord]] = {}
        # id(weak reference) -> (id(obj), record): lets the callback find its record without the object.
        self._by_ref: dict[int, tuple[int, ClosureRecord]] = {}
        # id -> serial of the last watched object that died at that address.
        self._dead_ids: dict[int, int] = {}
        self.id_reuses = 0
        # One bound method for every weak reference's callback (a new one per reference would be garbage of ours).
        self._callback = self._collected

    # -- recording ---------------------------------------------------------------------------------------
    def lookup(self, obj: Any) -> ClosureRecord | None:
        """The record of ``obj`` if it is watched and alive (an id match alone is not enough)."""
        hit = self._live.get(id(obj))
        if hit is not None and hit[0]() is obj:
            return hit[1]
        return None

    def register(
        self,
        obj: Any,
        *,
        source: str,
        factory: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        created_at: str | None = None,
        role: str | None = None,
        tool_refs: int = 0,
    ) -> ClosureRecord:
        """Watch ``obj`` (once: a second call returns the existing record, adding ``role``).

        ``tool_refs`` is how many references the caller itself holds, so the refcount recorded is the one
        seen from outside the tool.
        """
        rec = self.lookup(obj)
        if rec is not None:
            if role and role not in rec.roles:
                rec.roles.append(role)
            return rec
        qualname, module, kind = describe_callable(obj)
        oid = id(obj)
        rec = ClosureRecord(
            serial=len(self._records) + 1,
            id=oid,
            factory=factory or factory_of(qualname, module),
            qualname=qualname,
            module=module,
            kind=kind,
            source=source,
            created_cycle=self._clock(),
            collected_cycle=None,
            created_at=created_at,
            args=short_args(args, kwargs or {}) if (args or kwargs) else [],
            captures=describe_captures(obj),
            # getrefcount's own argument and this frame's ``obj`` are ours too.
            refcount_at_creation=sys.getrefcount(obj) - 2 - tool_refs,
            roles=[role] if role else [],
        )
        dead = self._dead_ids.pop(oid, None)
        if dead is not None:
            rec.reused_id_of = dead
            self.id_reuses += 1
        try:
            ref = weakref.ref(obj, self._callback)
        except TypeError:
            rec.weakrefable = False
        else:
            self._live[oid] = (ref, rec)
            self._by_ref[id(ref)] = (oid, rec)
        self._records.append(rec)
        return rec

    def _collected(self, ref: weakref.ref[Any]) -> None:
        hit = self._by_ref.pop(id(ref), None)
        if hit is None:
            return
        oid, rec = hit
        rec.collected_cycle = self._clock()
        live = self._live.get(oid)
        if live is not None and live[0] is ref:
            del self._live[oid]
        self._dead_ids[oid] = rec.serial

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def records(self) -> list[ClosureRecord]:
        return self._records

    def alive(self) -> Iterator[tuple[ClosureRecord, Any]]:
        """Yield ``(record, object)`` for watched objects still alive. Callers must drop the object soon."""
        for ref, rec in list(self._live.values()):
            obj = ref()
            if obj is not None:
                yield rec, obj

    def alive_by_factory(self) -> dict[str, int]:
        counts = Counter(rec.factory for _, rec in self._live.values())
        return dict(counts)

    def alive_count(self) -> int:
        return len(self._live)

    def finish(self) -> None:
        """Record refcounts at the end of the run, then drop every weak reference."""
        for ref, rec in list(self._live.values()):
            obj = ref()
            if obj is not None:
                rec.refcount_at_end = sys.getrefcount(obj) - 2
            del obj
        self._live.clear()
        self._by_ref.clear()

    def own_objects(self) -> Iterator[Any]:
        """The gc-tracked containers the registry itself holds, so scans can leave them out."""
        yield self._records
        yield self._live
        yield self._by_ref
        yield self._dead_ids
        yield self._callback
        for rec in self._records:
            yield rec
            yield rec.args
            yield rec.captures
            yield rec.roles
            yield from rec.captures
        for entry in self._live.values():
            yield entry
            yield entry[0]
        yield from self._by_ref.values()
