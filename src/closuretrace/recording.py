"""What one profiled run measured, before any judgement: the :class:`Recording`.

The data flow is ``instrument → probes → Profiler → Recording → analysis.analyse → Session → renderers``.
:meth:`closuretrace.Profiler.stop` returns a Recording; :func:`closuretrace.analysis.analyse` turns it into a
:class:`~closuretrace.session.Session`, making every judgement (verdicts, chains, advice, the report's status).

A Recording is plain data plus one live part, :class:`LiveHeap`: the weak references the retention-chain search
starts from and the tool's own objects it must skip. The live part is valid only while the program's heap still
exists (before ``__main__`` is torn down) and until :meth:`LiveHeap.release`; it never holds the program's
objects strongly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from closuretrace.session import ClosureRecord, CycleSample, Event, MetricInfo, RunInfo


@dataclass
class ProfileOptions:
    """What to measure and how to judge it. Every field has a command-line twin in ``closuretrace profile``."""

    warmup: int = 1
    #: metric name -> noise floor per cycle (overrides the metric's default)
    thresholds: dict[str, float] = field(default_factory=dict)
    #: also list closures whose code lives in the stdlib or site-packages
    include_libraries: bool = False
    tracemalloc: bool = False
    keras: bool = True
    census: bool = True
    chain_timeout: float = 5.0
    chain_depth: int = 25
    #: run the full collection and the heap census in the profiled process at each cycle end, never in a
    #: snapshot child (``closuretrace.probes.forked``)
    #: the full collection and the heap census in this process (default), or in a forked snapshot child
    #: (``False``, ``--probe-in-child``: cheaper on the critical path, but without per-cycle birth markers, so
    #: the holder analysis falls back to plain retention chains)
    probe_in_process: bool = True

    def to_settings(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "thresholds": dict(self.thresholds),
            "include_libraries": self.include_libraries,
            "tracemalloc": self.tracemalloc,
            "keras": self.keras,
            "census": self.census,
            "chain_timeout": self.chain_timeout,
            "chain_depth": self.chain_depth,
            "probe_in_process": self.probe_in_process,
        }


class LiveHeap:
    """Handles on the live heap for the analyses that need it (retention chains), all weak.

    ``samples`` yields ``(type name, cycle born, object)`` for sampled instances still alive; ``closures`` yields
    ``(record, object)`` for watched callables still alive; ``own`` yields the tool's own containers, which a
    referrer search must never walk through. Callers drop each yielded object before the next one.
    """

    def __init__(
        self,
        samples: Callable[[], Iterator[tuple[str, int, Any]]],
        closures: Callable[[], Iterator[tuple[ClosureRecord, Any]]],
        own: Callable[[], Iterable[Any]],
        release: Callable[[], None],
        births: Callable[[], dict[int, Any]] | None = None,
    ) -> None:
        self._births = births
        self._samples = samples
        self._closures = closures
        self._own = own
        self._release = release
        self.released = False

    def samples(self) -> Iterator[tuple[str, int, Any]]:
        return iter(()) if self.released else self._samples()

    def closures(self) -> Iterator[tuple[ClosureRecord, Any]]:
        return iter(()) if self.released else self._closures()

    def birth_markers(self) -> dict[int, Any]:
        """Cycle index -> the heap probe's marker made when that cycle ended: objects listed after it in
        ``gc.get_objects(2)`` were born later (the growth set of :mod:`closuretrace.analysis.growth`)."""
        return {} if self.released or self._births is None else self._births()

    def own(self) -> Iterable[Any]:
        yield self
        if not self.released:
            yield from self._own()

    def release(self) -> None:
        """Drop every weak reference; later reads yield nothing."""
        if not self.released:
            self.released = True
            self._release()


@dataclass
class Recording:
    """Everything a run measured: the per-cycle readings, the type census, closure records and events."""

    run: RunInfo
    options: ProfileOptions
    metrics: list[MetricInfo]
    cycles: list[CycleSample]
    #: per cycle, type name -> live instances
    census: list[dict[str, int]]
    closures: list[ClosureRecord]
    events: list[Event]
    live: LiveHeap | None = None
