"""JAX readings, taken only when the program has imported JAX itself (never imported here).

``jax_live_arrays`` / ``jax_live_array_bytes`` count the arrays JAX still holds on any device
(``jax.live_arrays()``, which works on CPU too). ``jax_cache_entries`` adds up the entries of JAX's own
memoising caches (every function in a ``jax`` module that exposes ``cache_info()``: the jit/lowering and staging
caches); they are bounded, so they rise and then stop, but a loop that jits a new function or a new shape each
cycle fills them. ``jax_device_bytes:<device>`` is the allocator's ``bytes_in_use`` where a device reports it
(GPUs and TPUs; ``memory_stats()`` is ``None`` on CPU).
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from closuretrace.probes.base import CycleContext, KiB, MetricDef, Probe


def jax_loaded() -> bool:
    """Whether the program runs JAX: imported *and* a backend initialised. Keras 3 imports JAX whatever its
    backend; reading live arrays or devices would start JAX's runtime (and its threads) in a program that never
    used it, so the probe waits until the program has."""
    if "jax" not in sys.modules:
        return False
    backends = getattr(sys.modules.get("jax._src.xla_bridge"), "_backends", None)
    return isinstance(backends, dict) and bool(backends)


class JaxProbe(Probe):
    """Live arrays, cache entries and device bytes, once the program imports JAX."""

    metrics: ClassVar[tuple[MetricDef, ...]] = (
        MetricDef("jax_live_arrays", "arrays", "JAX live arrays", "arrays alive on any JAX device", 0.5),
        MetricDef(
            "jax_live_array_bytes", "bytes", "JAX live array bytes", "bytes of the arrays alive on JAX devices",
            256 * KiB,
        ),
        MetricDef(
            "jax_cache_entries", "entries", "JAX cache entries",
            "entries in JAX's memoising caches (jit, lowering, staging; bounded)", 0.5,
        ),
    )

    #: reads JAX's own state, not the heap census: it runs in the profiler's process, never in a snapshot child
    needs_heap = False

    def __init__(self) -> None:
        self._caches: list[Any] = []
        self._modules_seen = 0

    def applies(self) -> bool:
        return jax_loaded()

    def _find_caches(self) -> list[Any]:
        # The list of cache functions is found again only when new jax modules were imported.
        names = [n for n in list(sys.modules) if n == "jax" or n.startswith(("jax.", "jaxlib."))]
        if len(names) != self._modules_seen:
            self._modules_seen = len(names)
            found: dict[int, Any] = {}
            for name in names:
                for value in list(vars(sys.modules[name]).values()) if sys.modules.get(name) else ():
                    if callable(getattr(value, "cache_info", None)) and callable(value):
                        found[id(value)] = value
            self._caches = list(found.values())
        return self._caches

    def read(self, ctx: CycleContext | None) -> dict[str, float]:
        jax: Any = sys.modules.get("jax")
        out: dict[str, float] = {}
        if jax is None:
            return out
        try:
            arrays = jax.live_arrays()
            out["jax_live_arrays"] = len(arrays)
            out["jax_live_array_bytes"] = sum(int(getattr(a, "nbytes", 0)) for a in arrays)
            del arrays
        except Exception:
            pass
        entries = 0
        for cache in self._find_caches():
            try:
                entries += int(cache.cache_info().currsize)
            except Exception:
                continue
        out["jax_cache_entries"] = entries
        try:
            for dev in jax.devices():
                stats = dev.memory_stats()
                if stats and "bytes_in_use" in stats:
                    out[f"jax_device_bytes:{dev.platform}:{dev.id}"] = int(stats["bytes_in_use"])
        except Exception:
            pass
        return out

    @classmethod
    def define(cls, name: str) -> MetricDef | None:
        if name.startswith("jax_device_bytes:"):
            dev = name.split(":", 1)[1]
            covers = "bytes in use on the device (allocator stats)"
            return MetricDef(name, "bytes", f"JAX device {dev}", covers, 256 * KiB)
        return super().define(name)
