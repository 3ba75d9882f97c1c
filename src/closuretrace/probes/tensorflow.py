"""TensorFlow readings, taken only when the program has imported TensorFlow itself (never imported here)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, ClassVar

from closuretrace.probes.base import CycleContext, KiB, MetricDef, Probe


def tf_loaded() -> bool:
    return "tensorflow" in sys.modules


def func_graph_count(type_objects: Counter[type]) -> int | None:
    """Live FuncGraph objects (subclasses included), from the heap census's type counts."""
    mod = sys.modules.get("tensorflow.python.framework.func_graph")
    base = getattr(mod, "FuncGraph", None)
    if base is None:
        return None
    return sum(n for t, n in type_objects.items() if isinstance(t, type) and issubclass(t, base))


def function_count() -> int | None:
    """Functions registered in the eager context: each tf.function trace adds at least one."""
    mod = sys.modules.get("tensorflow.python.eager.context")
    if mod is None:
        return None
    try:
        return len(mod.context().list_function_names())
    except Exception:
        return None


def allocator_stats() -> dict[str, int]:
    """Bytes in use and peak per device whose allocator keeps stats (GPU; CPU only with oneDNN on x86)."""
    tf: Any = sys.modules.get("tensorflow")
    out: dict[str, int] = {}
    if tf is None:
        return out
    try:
        devices = [d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices()]
    except Exception:
        return out
    for dev in devices:
        if not dev.startswith(("CPU", "GPU")):
            continue
        try:
            info = tf.config.experimental.get_memory_info(dev)
        except Exception:  # "Allocator stats not available" (CPU without oneDNN), or no such device
            continue
        out[f"tf_allocator_bytes:{dev}"] = int(info.get("current", 0))
        out[f"tf_allocator_peak_bytes:{dev}"] = int(info.get("peak", 0))
    return out


class TensorFlowProbe(Probe):
    """Traced graphs, registered functions and the allocator per device, once the program imports TensorFlow."""

    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef(
            "tf_func_graphs", "graphs", "TF FuncGraphs", "live tf FuncGraph objects (one or more per trace)", 0.5,
            types=("tensorflow.python.framework.func_graph.FuncGraph",),
        ),
        MetricDef(
            "tf_functions", "functions", "TF functions",
            "functions registered in the eager context (grows with every trace)", 0.5,
        ),
    )

    def applies(self) -> bool:
        return tf_loaded()

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        out: dict[str, float] = {}
        graphs = func_graph_count(ctx.type_objects) if ctx is not None else None
        if graphs is not None:
            out["tf_func_graphs"] = graphs
        fns = function_count()
        if fns is not None:
            out["tf_functions"] = fns
        out.update(allocator_stats())
        return out

    @classmethod
    def define(cls, name: str) -> MetricDef | None:
        if name.startswith("tf_allocator_bytes:"):
            dev = name.split(":", 1)[1]
            covers = "TF allocator bytes in use"
            if dev.startswith("CPU"):
                covers += " (CPU: oneDNN allocator, allocations >= 256 KiB only)"
            return MetricDef(name, "bytes", f"TF allocator {dev}", covers, 256 * KiB)
        if name.startswith("tf_allocator_peak_bytes:"):
            dev = name.split(":", 1)[1]
            return MetricDef(name, "bytes", f"TF allocator peak {dev}", "TF allocator peak bytes", 0, verdict=False)
        return super().define(name)
