"""The profiler: turns instrumentation events and probe readings into a :class:`~closuretrace.session.Session`.

Use it from code when you do not go through ``closuretrace profile``::

    import closuretrace

    with closuretrace.Profiler() as prof:
        for trial in range(8):
            model.compile(optimizer, loss=outer_loss(trial))
            model.fit(x, y, epochs=1)           # with Keras, each fit() ends a cycle
    print(closuretrace.render_text(prof.session))

Without Keras, end cycles yourself with ``with prof.cycle(): ...`` or ``prof.end_cycle()``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from closuretrace._version import __version__
from closuretrace.instrument.registry import ClosureRegistry
from closuretrace.instrument.state import STATE
from closuretrace.probes import metric_def
from closuretrace.probes import pymalloc as tracemalloc_probe
from closuretrace.probes import tensorflow as tf_probe
from closuretrace.probes.heap import CodeFilter, HeapProbe
from closuretrace.probes.process import rss_bytes
from closuretrace.session import CycleSample, Event, RunInfo, Session


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
        }


class Profiler:
    """Records closures and per-cycle probes; :meth:`finish` analyses them into :attr:`session`.

    Only one profiler records at a time. All references to the program's objects are weak, and the tool's own
    containers are left out of every count.
    """

    def __init__(self, options: ProfileOptions | None = None, argv: list[str] | None = None) -> None:
        self.options = options or ProfileOptions()
        self._cycle = 0
        self.registry = ClosureRegistry(clock=lambda: self._cycle)
        self.heap = HeapProbe(own=self._own_objects, code_filter=CodeFilter(self.options.include_libraries))
        self.cycles: list[CycleSample] = []
        # The type census, stored as what changed per cycle: a full dict of ~3,000 types per cycle would grow the
        # very RSS being measured by ~150 KiB a cycle. Names are interned, so cycles share the key strings.
        self._census_changes: list[dict[str, int]] = []
        self._census_now: dict[str, int] = {}
        self.events: list[Event] = []
        self.session: Session | None = None
        self._run = RunInfo(argv=list(argv if argv is not None else sys.argv))
        self._t_start = 0.0
        self._t_cycle = 0.0
        self._started_tracemalloc = False
        self._cleanups: list[Any] = []
        self._active = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Profiler:
        if STATE.profiler is not None:
            raise RuntimeError("another closuretrace Profiler is already recording")
        STATE.profiler = self
        self._active = True
        self._run.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._run.cwd = os.getcwd()
        if self.options.tracemalloc:
            self._started_tracemalloc = tracemalloc_probe.start()
        if self.options.keras:
            from closuretrace.instrument import keras_hooks

            self._cleanups.append(keras_hooks.install(self))
        self._t_start = self._t_cycle = time.perf_counter()
        return self

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.finish()
        elif issubclass(et, KeyboardInterrupt):
            self.finish(outcome="interrupted", exit_code=130, error="KeyboardInterrupt")
        elif issubclass(et, SystemExit):
            code = ev.code if ev is not None else None
            self.finish(outcome="exit", exit_code=_exit_code(code), error=None if code in (None, 0) else str(code))
        else:
            self.finish(outcome="exception", exit_code=1, error=f"{et.__name__}: {ev}")

    @property
    def cycle_index(self) -> int:
        """Index of the cycle now running (0 until the first cycle ends)."""
        return self._cycle

    @contextlib.contextmanager
    def cycle(self, label: str | None = None) -> Iterator[None]:
        """A block that is one cycle: the probes run when it exits (also if it raises)."""
        try:
            yield
        finally:
            self.end_cycle(label)

    def record_event(self, kind: str, **detail: Any) -> None:
        self.events.append(Event(cycle=self._cycle, kind=kind, detail=detail))

    def end_cycle(self, label: str | None = None) -> CycleSample:
        """Collect garbage, read every probe, adopt newly found closures, and start the next cycle."""
        t0 = time.perf_counter()
        seconds = t0 - self._t_cycle
        self.heap.collect()
        metrics: dict[str, float] = {"rss_bytes": rss_bytes()}
        reading = self.heap.measure(self._cycle, find_closures=self.options.census)
        for fn in reading.closures:
            self.registry.register(fn, source="census", tool_refs=2)  # the list and the loop variable
        reading.closures.clear()
        metrics["gc_objects"] = reading.gc_objects
        metrics["closures_alive"] = self.registry.alive_count()
        if tf_probe.tf_loaded():
            graphs = tf_probe.func_graph_count(reading.type_objects)
            if graphs is not None:
                metrics["tf_func_graphs"] = graphs
            fns = tf_probe.function_count()
            if fns is not None:
                metrics["tf_functions"] = fns
            metrics.update(tf_probe.allocator_stats())
        traced = tracemalloc_probe.current_bytes() if self.options.tracemalloc else None
        if traced is not None:
            metrics["tracemalloc_bytes"] = traced
        sample = CycleSample(
            index=self._cycle,
            label=label or f"cycle {self._cycle}",
            seconds=seconds,
            probe_seconds=0.0,
            metrics=metrics,
            closures_alive_by_factory=self.registry.alive_by_factory(),
        )
        by_type = reading.by_type
        last = self._census_now
        changes = {t: n for t, n in by_type.items() if last.get(t) != n}
        changes.update((t, 0) for t in last if t not in by_type)
        self._census_changes.append(changes)
        self._census_now = by_type
        self.cycles.append(sample)
        del reading
        self._cycle += 1
        now = time.perf_counter()
        sample.probe_seconds = now - t0
        self._t_cycle = now
        return sample

    def finish(self, outcome: str = "completed", exit_code: int = 0, error: str | None = None) -> Session:
        """Stop recording and analyse. Safe to call twice; the second call returns the same session."""
        if self.session is not None:
            return self.session
        try:
            if not self.cycles:
                self.end_cycle("end")
            self._run.outcome = outcome
            self._run.exit_code = exit_code
            self._run.error = error
            self._run.duration_s = time.perf_counter() - self._t_start
            self._run.python = sys.version.split()[0]
            self._run.platform = platform.platform()
            self._run.versions = _versions()
            self.session = self._analyse()
        finally:
            self._stop()
        return self.session

    def _stop(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()
        tracemalloc_probe.stop(self._started_tracemalloc)
        self.registry.finish()
        self.heap.samples.clear()
        if STATE.profiler is self:
            STATE.profiler = None
        self._active = False

    @property
    def census(self) -> list[dict[str, int]]:
        """Per cycle, type name -> live instances (rebuilt from the stored changes)."""
        out: list[dict[str, int]] = []
        current: dict[str, int] = {}
        for changes in self._census_changes:
            current = {**current, **changes}
            out.append({t: n for t, n in current.items() if n})
        return out

    # -- analysis ----------------------------------------------------------------------------------------
    def _analyse(self) -> Session:
        from closuretrace.analysis import advice, retention, verdicts

        opts = self.options
        vs = verdicts.verdicts(self.cycles, opts.warmup, opts.thresholds)
        types = verdicts.growing_types(self.census, opts.warmup)
        names: list[str] = []
        for c in self.cycles:
            names.extend(k for k in c.metrics if k not in names)
        session = Session(
            run=self._run,
            settings=opts.to_settings(),
            metrics=[metric_def(n).info() for n in names],
            cycles=self.cycles,
            closures=self.registry.records,
            events=self.events,
            verdicts=vs,
            growing_types=types,
        )
        # Chains need the live objects, so they are searched now, while the program's heap still exists.
        session.retention = retention.chains_for(session, self, ignore=self._own_objects())
        session.advice = advice.advise(session)
        return session

    def _own_objects(self) -> Iterable[Any]:
        yield self.cycles
        yield self._census_changes
        yield self.events
        yield self._cleanups
        for c in self.cycles:
            yield c
            yield c.metrics
            yield c.closures_alive_by_factory
        for e in self.events:
            yield e
            yield e.detail
        yield from self.registry.own_objects()


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return 1  # sys.exit("message") prints the message and exits 1


def _versions() -> dict[str, str]:
    out = {"closuretrace": __version__}
    for name in ("tensorflow", "keras", "numpy"):
        mod = sys.modules.get(name)
        v = getattr(mod, "__version__", None)
        if isinstance(v, str):
            out[name] = v
    return out
