"""TensorFlow readings, taken only when the program has imported TensorFlow itself (never imported here)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any


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
