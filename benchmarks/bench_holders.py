"""P6: the holder analysis on a 1M-object heap with a 50k-object growth set (target: 1.5 s or less).

Run for figures:   python -m pytest benchmarks/bench_holders.py -p no:xdist --benchmark-only \\
                       --benchmark-columns=min,median,max
Quick mode (CI):   runs once as a plain test under ``--benchmark-disable``.

The heap: 950,000 old one-element lists (a module global) and a registry dict made before the marker; after
it, 12,500 registry entries of 4 gc objects each (a dict, a list, an instance and its list) = 50,000 new
objects. Measured: finding the new objects after the birth marker, the holder graph (edges, sources by one
pass over the heap, labels), the tally, and the name of the holder found (a chain search from the registry).
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from closuretrace.analysis.chain_labels import label_path
from closuretrace.analysis.chains import find_root_path
from closuretrace.analysis.growth import born_after
from closuretrace.analysis.holders import HolderGraph


class Entry:
    def __init__(self, i: int) -> None:
        self.values = [i, i + 1]


@pytest.fixture(scope="module")
def heap() -> Iterator[dict[str, Any]]:
    mod = types.ModuleType("_ct_bench_holders")
    sys.modules[mod.__name__] = mod
    mod.old = [[i] for i in range(950_000)]
    mod.registry = {}
    # As the heap probe does: markers are held by a list older than them (a full collection moves an object
    # found only through a younger one to the end), and each joins the oldest generation at once.
    mod.markers = markers = [[], []]
    markers.clear()
    gc.collect()
    markers.append([])
    gc.collect(1)
    for i in range(12_500):
        mod.registry[f"entry-{i}"] = {"value": [Entry(i)]}
    gc.collect()
    markers.append([])
    gc.collect(1)
    gc.collect()
    yield {"mod": mod, "markers": {0: markers[0], 2: markers[1]}}
    del sys.modules[mod.__name__]
    mod.__dict__.clear()
    gc.collect()


def _analyse(markers: dict[int, Any]) -> tuple[int, int, str]:
    found = born_after(markers, 0, 2, [])
    assert not isinstance(found, str), found
    new, counted, _, old = found
    graph = HolderGraph(new, counted=counted, ignore=[markers], scan=old)
    new.clear()
    try:
        objects, _ = graph.tally()
        top = max((lab for lab in objects if isinstance(lab, int)), key=lambda lab: objects[lab])
        source = graph.sources[top]
        if source.kind == "global":  # the registry dict itself is new: it became tracked with its first entry
            return graph.counted, objects[top], source.name
        rp = find_root_path(source.entry, ignore=[graph, *graph.own_objects()])
        return graph.counted, objects[top], label_path(rp.path, rp.root or "")[-1]
    finally:
        graph.release()


def test_p6_holders_on_a_million_objects(benchmark: Any, heap: dict[str, Any]) -> None:
    assert len(gc.get_objects()) >= 1_000_000
    counted, retained, last_hop = benchmark(lambda: _analyse(heap["markers"]))
    assert counted >= 50_000
    assert retained >= 50_000  # the registry alone frees every new object
    assert last_hop.endswith("registry")
