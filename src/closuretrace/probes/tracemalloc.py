"""tracemalloc, only on request: it slows the program several-fold."""

from __future__ import annotations

import tracemalloc
from typing import ClassVar

from closuretrace.probes.base import CycleContext, KiB, MetricDef, Probe


class TracemallocProbe(Probe):
    """Python allocations traced by tracemalloc; started by the profiler unless the program already traces."""

    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef("tracemalloc_bytes", "bytes", "tracemalloc", "Python allocations traced by tracemalloc", 256 * KiB),
    )

    def __init__(self) -> None:
        self._started = False

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started = True

    def stop(self) -> None:
        if self._started and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._started = False

    def applies(self) -> bool:
        return tracemalloc.is_tracing()

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        return {"tracemalloc_bytes": tracemalloc.get_traced_memory()[0]}
