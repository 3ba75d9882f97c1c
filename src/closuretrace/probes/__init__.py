"""Probes: what is measured at the end of each cycle, after ``gc.collect()``.

Each metric is declared once here with its unit, what it covers and the default noise floor below which
growth is not called a leak. Probes for optional libraries (TensorFlow) only look at modules the program has
already imported; they never import them.
"""

from __future__ import annotations

from dataclasses import dataclass

from closuretrace.session import MetricInfo

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class MetricDef:
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


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("rss_bytes", "bytes", "RSS", "resident set size of the process (psutil)", 256 * KiB),
        MetricDef(
            "gc_objects", "objects", "gc objects", "objects tracked by Python's gc, the tool's own excluded", 100
        ),
        MetricDef("closures_alive", "closures", "closures alive", "watched callables still alive", 0.5),
        MetricDef(
            "tf_func_graphs", "graphs", "TF FuncGraphs", "live tf FuncGraph objects (one or more per trace)", 0.5,
            types=("tensorflow.python.framework.func_graph.FuncGraph",),
        ),
        MetricDef(
            "tf_functions", "functions", "TF functions",
            "functions registered in the eager context (grows with every trace)", 0.5,
        ),
        MetricDef("tracemalloc_bytes", "bytes", "tracemalloc", "Python allocations traced by tracemalloc", 256 * KiB),
    )
}


def metric_def(name: str) -> MetricDef:
    """The definition of ``name``; per-device allocator metrics are declared on the fly."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith("tf_allocator_bytes:"):
        dev = name.split(":", 1)[1]
        covers = "TF allocator bytes in use"
        if dev.startswith("CPU"):
            covers += " (CPU: oneDNN allocator, allocations >= 256 KiB only)"
        return MetricDef(name, "bytes", f"TF allocator {dev}", covers, 256 * KiB)
    if name.startswith("tf_allocator_peak_bytes:"):
        dev = name.split(":", 1)[1]
        return MetricDef(name, "bytes", f"TF allocator peak {dev}", "TF allocator peak bytes", 0, verdict=False)
    return MetricDef(name, "", name, "", 0.0)
