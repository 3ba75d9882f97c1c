"""Probes: what is measured at the end of each cycle, after ``gc.collect()``.

Each probe is one class (:class:`~closuretrace.probes.base.Probe`) that declares its metrics (unit, what it
covers, the default noise floor) and reads them. The profiler reads every probe in :data:`PROBES` that applies;
adding a probe (a backend, a device) is a class and one entry here, nothing in the profiler. Probes for optional
libraries only look at modules the program has already imported; they never import them.
"""

from __future__ import annotations

from closuretrace.probes.base import KiB, MetricDef, MiB, Probe
from closuretrace.probes.heap_metrics import ClosuresProbe, GcObjectsProbe
from closuretrace.probes.jax import JaxProbe
from closuretrace.probes.process import RSSProbe
from closuretrace.probes.tensorflow import TensorFlowProbe
from closuretrace.probes.tracemalloc import TracemallocProbe

#: Every probe class, in the order their metrics appear in reports. The tracemalloc probe is added on request.
PROBES: tuple[type[Probe], ...] = (RSSProbe, GcObjectsProbe, ClosuresProbe, TensorFlowProbe, JaxProbe)
OPTIONAL_PROBES: dict[str, type[Probe]] = {"tracemalloc": TracemallocProbe}

__all__ = [
    "OPTIONAL_PROBES", "PROBES", "KiB", "MetricDef", "MiB", "Probe", "known_metric", "metric_def", "metric_names",
]


def metric_def(name: str) -> MetricDef:
    """The definition of metric ``name`` (from the probe that reports it), or a neutral one if none does."""
    for probe in (*PROBES, *OPTIONAL_PROBES.values()):
        found = probe.define(name)
        if found is not None:
            return found
    return MetricDef(name, "", name, "", 0.0)


def known_metric(name: str) -> bool:
    """Whether some probe reports metric ``name``."""
    return any(probe.define(name) is not None for probe in (*PROBES, *OPTIONAL_PROBES.values()))


def metric_names() -> list[str]:
    """The fixed metric names (per-device metrics are named at run time)."""
    return [m.name for probe in (*PROBES, *OPTIONAL_PROBES.values()) for m in probe.metrics]
