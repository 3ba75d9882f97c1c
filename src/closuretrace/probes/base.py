"""What a probe is: a class that declares its metrics and reads them at the end of each cycle."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from closuretrace.session import MetricInfo

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class MetricDef:
    """One metric: its unit, what it covers, and the default noise floor below which growth is not a leak."""

    name: str
    unit: str
    label: str
    covers: str
    noise_floor: float
    #: type-name prefixes whose instances this metric counts: retention chains for it start from one of them
    types: tuple[str, ...] = ()
    #: monotone by construction (a peak): recorded but never given a verdict
    verdict: bool = True

    def info(self) -> MetricInfo:
        return MetricInfo(name=self.name, unit=self.unit, label=self.label, covers=self.covers)


@dataclass
class CycleContext:
    """What a probe may read at the end of a cycle, after the full collection and the heap pass."""

    #: live type objects -> instance count (the tool's own subtracted); transient, holds types only
    type_objects: Counter[type]
    gc_objects: int
    closures_alive: int


class Probe:
    """Base class of a probe. Subclasses set :attr:`metrics` and implement :meth:`read`.

    :attr:`needs_heap` probes read after the heap pass (they see :class:`CycleContext`); the others read
    before it, so the heap pass's own allocations do not show in them (RSS). :meth:`applies` is asked once per
    cycle: a probe for an optional library applies only once the program has imported it, never importing it.
    """

    metrics: ClassVar[tuple[MetricDef, ...]] = ()
    needs_heap: ClassVar[bool] = True

    def applies(self) -> bool:
        return True

    def start(self) -> None:
        """Called when the profiler starts (e.g. start tracing)."""

    def stop(self) -> None:
        """Called when the profiler stops; undoes :meth:`start`."""

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def define(cls, name: str) -> MetricDef | None:
        """The definition of ``name`` if this probe reports it (metrics named per device are defined here)."""
        return next((m for m in cls.metrics if m.name == name), None)


def default_def(name: str, **kw: Any) -> MetricDef:
    return MetricDef(name, kw.get("unit", ""), kw.get("label", name), kw.get("covers", ""), kw.get("floor", 0.0))
