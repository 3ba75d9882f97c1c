"""The two counts the heap pass itself gives: objects tracked by gc, and watched closures alive."""

from __future__ import annotations

from typing import ClassVar

from closuretrace.probes.base import CycleContext, MetricDef, Probe


class GcObjectsProbe(Probe):
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef(
            "gc_objects", "objects", "gc objects", "objects tracked by Python's gc, the tool's own excluded", 100
        ),
    )

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        return {} if ctx is None else {"gc_objects": ctx.gc_objects}


class ClosuresProbe(Probe):
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef("closures_alive", "closures", "closures alive", "watched callables still alive", 0.5),
    )

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        return {} if ctx is None else {"closures_alive": ctx.closures_alive}
