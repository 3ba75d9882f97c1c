"""P2 and P3: the cost of a tracked factory call, of the per-cycle census, and of a chain search.

Run for figures:   python -m pytest benchmarks -p no:xdist --benchmark-only --benchmark-columns=min,median,max
Quick mode (CI):   they run once each as plain tests under ``-n 2`` or ``--benchmark-disable``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import closuretrace
from closuretrace.analysis.chains import find_chain
from closuretrace.probes.heap import CodeFilter, HeapProbe


def _factory(value: Any) -> Any:
    def inner(x: Any) -> Any:
        return x + value

    return inner


_tracked = closuretrace.track(_factory)


@pytest.fixture
def profiler() -> Iterator[closuretrace.Profiler]:
    prof = closuretrace.Profiler(closuretrace.ProfileOptions(keras=False, census=False))
    prof.start()
    yield prof
    prof.finish()


# Both keep what the factory returns (like a model holding its loss), so both pay the same allocation and
# garbage-collection pressure and the difference is the tool's own work.
def test_p2_untracked_factory_call(benchmark: Any) -> None:
    keep: list[Any] = []
    benchmark(lambda: keep.append(_factory(1)))


def test_p2_tracked_factory_call(benchmark: Any, profiler: closuretrace.Profiler) -> None:
    keep: list[Any] = []
    benchmark(lambda: keep.append(_tracked(1)))
    assert len(profiler.registry.records) == len(keep)


@pytest.fixture(scope="module")
def big_heap() -> Iterator[list[Any]]:
    """About a million gc-tracked objects, like a large TensorFlow program."""
    heap = [[i] for i in range(1_000_000)]
    gc.collect()
    yield heap
    del heap
    gc.collect()


def test_p3_census_on_a_million_objects(benchmark: Any, big_heap: list[Any]) -> None:
    probe = HeapProbe(own=lambda: (), code_filter=CodeFilter())
    cycle = iter(range(10**6))

    def census() -> int:
        probe.collect()
        return probe.measure(next(cycle)).gc_objects

    n = benchmark(census)
    assert n >= 1_000_000


def test_p3_chain_search_on_a_million_objects(benchmark: Any, big_heap: list[Any]) -> None:
    target = big_heap[500_000]
    result = benchmark(lambda: find_chain(target, timeout=10.0))
    assert result.found and result.root is not None
