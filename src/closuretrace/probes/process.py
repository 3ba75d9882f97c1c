"""Process-level readings: the resident set size."""

from __future__ import annotations

from typing import ClassVar

import psutil

from closuretrace.probes.base import CycleContext, KiB, MetricDef, Probe

_PROC: psutil.Process | None = None


def rss_bytes() -> int:
    """Resident set size of this process, in bytes."""
    global _PROC
    if _PROC is None:
        _PROC = psutil.Process()
    return int(_PROC.memory_info().rss)


class RSSProbe(Probe):
    """RSS, read before the heap pass so that the pass's own lists do not count."""

    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef("rss_bytes", "bytes", "RSS", "resident set size of the process (psutil)", 256 * KiB),
    )
    needs_heap = False

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        return {"rss_bytes": rss_bytes()}
