"""The profiler: records closures and per-cycle probe readings into a :class:`~closuretrace.recording.Recording`.

Use it from code when you do not go through ``closuretrace profile``::

    import closuretrace

    with closuretrace.Profiler() as prof:
        for trial in range(8):
            model.compile(optimizer, loss=outer_loss(trial))
            model.fit(x, y, epochs=1)           # with Keras, each fit() ends a cycle
    print(closuretrace.render_text(prof.session))

Without Keras, end cycles yourself with ``with prof.cycle(): ...`` or ``prof.end_cycle()``.

The profiler only records. :meth:`Profiler.stop` returns the :class:`Recording`; :meth:`Profiler.finish` is
``stop`` followed by :func:`closuretrace.analysis.analyse`, which makes every judgement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gc
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from closuretrace._version import __version__
from closuretrace.instrument.registry import ClosureRegistry
from closuretrace.instrument.state import STATE
from closuretrace.outcome import Outcome, outcome_of
from closuretrace.probes import OPTIONAL_PROBES, PROBES, Probe, metric_def
from closuretrace.probes.base import CycleContext
from closuretrace.probes.forked import ForkedProbes
from closuretrace.probes.heap import CodeFilter, HeapProbe
from closuretrace.recording import LiveHeap, ProfileOptions, Recording
from closuretrace.session import CycleSample, Event, RunInfo, Session
from closuretrace.session.model import OutcomeKind

__all__ = ["ProfileOptions", "Profiler", "library_versions"]


class Profiler:
    """Records closures and per-cycle probes; :meth:`finish` analyses them into :attr:`session`.

    Only one profiler records at a time. All references to the program's objects are weak, and the tool's own
    containers are left out of every count. With ``baseline=True`` the user closures alive at :meth:`start`
    are never adopted (the pytest plugin judges a test only on the closures it makes).
    """

    def __init__(
        self, options: ProfileOptions | None = None, argv: list[str] | None = None, *, baseline: bool = False
    ) -> None:
        self.options = options or ProfileOptions()
        self._cycle = 0
        self._cycle_lock = threading.RLock()
        #: called with each cycle's sample once it is measured (a live progress display)
        self.listeners: list[Callable[[CycleSample], None]] = []
        self.registry = ClosureRegistry(clock=lambda: self._cycle, on_event=self.record_event)
        self.heap = HeapProbe(own=self._own_objects, code_filter=CodeFilter(self.options.include_libraries))
        self._baseline = baseline
        probes: list[Probe] = [p() for p in PROBES]
        if self.options.tracemalloc:
            probes.append(OPTIONAL_PROBES["tracemalloc"]())
        self.probes = probes
        self.cycles: list[CycleSample] = []
        # The type census, stored as what changed per cycle: a full dict of ~3,000 types per cycle would grow the
        # very RSS being measured by ~150 KiB a cycle. Names are interned, so cycles share the key strings.
        self._census_changes: list[dict[str, int]] = []
        self._census_now: dict[str, int] = {}
        self.events: list[Event] = []
        self.recording: Recording | None = None
        self.session: Session | None = None
        self._run = RunInfo(argv=list(argv if argv is not None else sys.argv))
        self._t_start = 0.0
        self._t_cycle = 0.0
        self._cleanups: list[Any] = []
        self._forked = ForkedProbes(self)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Profiler:
        if STATE.profiler is not None:
            raise RuntimeError("another closuretrace Profiler is already recording")
        if self._baseline:
            self.heap.take_baseline()
        STATE.profiler = self
        self._run.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._run.cwd = os.getcwd()
        for probe in self.probes:
            probe.start()
        if self.options.keras:
            from closuretrace.instrument import keras_hooks

            self._cleanups.append(keras_hooks.install(self))
        self._t_start = self._t_cycle = time.perf_counter()
        return self

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        ended = outcome_of(ev if ev is not None else (et() if et is not None else None))
        self.finish(ended.outcome, ended.exit_code, ended.error)

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

    def _adopt(self, closures: list[Any]) -> None:
        for fn in closures:
            self.registry.register(fn, source="census", tool_refs=2)  # the list and the loop variable
        closures.clear()

    def end_cycle(self, label: str | None = None) -> CycleSample:
        """Read every probe, adopt newly found closures, and start the next cycle.

        With ``probe_in_child`` (and where the platform allows), the full collection and the heap census run in
        a snapshot child (:mod:`closuretrace.probes.forked`) and their counts join this cycle's sample before
        the next cycle ends; otherwise they run here, after ``gc.collect()``. Threads that end cycles at once
        (a ``--cycle-on`` function called from several threads) take turns."""
        with self._cycle_lock:
            sample = self._end_cycle(label)
        for listener in list(self.listeners):
            try:
                listener(sample)
            except Exception:  # a progress display must never break the program
                self.listeners.remove(listener)
        return sample

    def _end_cycle(self, label: str | None) -> CycleSample:
        t0 = time.perf_counter()
        seconds = t0 - self._t_cycle
        forked = self._forked
        forked.fold_in()
        fork = forked.usable()
        if not fork:
            self.heap.collect()
        probes = [p for p in self.probes if p.applies()]
        metrics: dict[str, float] = {}
        for probe in probes:
            if not probe.needs_heap:
                metrics.update(probe.read(None))
        sample = CycleSample(self._cycle, label or f"cycle {self._cycle}", seconds, 0.0, metrics)
        self.cycles.append(sample)
        if not (fork and forked.begin(sample)):
            self._probe_heap(sample, probes)
        self._cycle += 1
        now = time.perf_counter()
        sample.probe_seconds = now - t0
        self._t_cycle = now
        return sample

    def _probe_heap(self, sample: CycleSample, probes: list[Probe]) -> None:
        """The heap probes in this process (after :meth:`HeapProbe.collect`)."""
        reading = self.heap.measure(self._cycle, find_closures=self.options.census)
        self._adopt(reading.closures)
        ctx = CycleContext(reading.type_objects, reading.gc_objects, self.registry.alive_count())
        for probe in probes:
            if probe.needs_heap:
                sample.metrics.update(probe.read(ctx))
        del ctx
        sample.closures_alive_by_factory = self.registry.alive_by_factory()
        by_type = reading.by_type
        last = self._census_now
        changes = {t: n for t, n in by_type.items() if last.get(t) != n}
        changes.update((t, 0) for t in last if t not in by_type)
        self._census_changes.append(changes)
        self._census_now = by_type
        del reading

    def adopt_closures(self) -> None:
        """Collect garbage and watch the closures made since the last cycle ended, without ending a cycle.

        The census runs at the end of each cycle; closures made after the last one (a test without cycles,
        later benchmark rounds) are adopted here before they are counted.
        """
        self._forked.fold_in()
        self.heap.collect()
        if not self.options.census:
            return
        reading = self.heap.measure(self._cycle, find_closures=True, sample=False)
        self._adopt(reading.closures)
        del reading

    def stop(
        self, outcome: Outcome | OutcomeKind = "completed", exit_code: int = 0, error: str | None = None
    ) -> Recording:
        """Stop recording and return what was recorded. Safe to call twice.

        ``outcome``: how the program ended, an :class:`~closuretrace.outcome.Outcome` (or its three fields).

        The hooks are removed and the probes stopped; the recording's :attr:`~Recording.live` part (weak
        references for the chain search) stays valid until it is released.
        """
        if self.recording is not None:
            return self.recording
        if isinstance(outcome, Outcome):
            ending = outcome
            outcome, exit_code, error = ending.outcome, ending.exit_code, ending.error
        try:
            if not self.cycles:
                self.end_cycle("end")
            # "Alive at end" means at exit: garbage the program left after its last cycle (a closure in a
            # reference cycle) is collected now, so its record says when it went. The last snapshot child, if
            # any, counts its cycle meanwhile.
            gc.collect()
            self._forked.stop(outcome)
            run = self._run
            run.outcome, run.exit_code, run.error = outcome, exit_code, error
            run.duration_s = time.perf_counter() - self._t_start
            run.python = sys.version.split()[0]
            run.platform = platform.platform()
            run.versions = library_versions()
        finally:
            self._unhook()
        self.recording = self._recording(self._run)
        return self.recording

    def snapshot(self) -> Recording:
        """What was recorded so far, without stopping (the notebook's report of a session still running).

        The run info is a copy that says ``"running"``; the profiler keeps recording, and releasing the
        snapshot's live part releases nothing of the profiler's.
        """
        self._forked.fold_in()
        run = dataclasses.replace(self._run, outcome="running", exit_code=0, error=None)
        run.duration_s = time.perf_counter() - self._t_start
        run.python, run.platform, run.versions = sys.version.split()[0], platform.platform(), library_versions()
        return self._recording(run, release=lambda: None)

    def _recording(self, run: RunInfo, release: Any = None) -> Recording:
        names: list[str] = []
        for c in self.cycles:
            names.extend(k for k in c.metrics if k not in names)
        return Recording(
            run=run,
            options=self.options,
            metrics=[metric_def(n).info() for n in names],
            cycles=list(self.cycles),
            census=self.census,
            closures=self._forked.records(self.registry.records),
            events=list(self.events),
            live=LiveHeap(
                self._samples, self.registry.alive, self._own_objects, release or self._release, self.heap.birth_markers
            ),
        )

    def finish(
        self,
        outcome: Outcome | OutcomeKind = "completed",
        exit_code: int = 0,
        error: str | None = None,
        *,
        alive_chain_skip: Collection[int] | None = None,
    ) -> Session:
        """:meth:`stop`, then analyse into :attr:`session`. Safe to call twice; the second returns the same session.

        ``alive_chain_skip``: also search what keeps a watched closure alive at the end (whether or not
        ``closures_alive`` grows), never starting from the closures with these serials (the pytest plugin's
        ``max_alive_closures``).
        """
        if self.session is not None:
            return self.session
        recording = self.stop(outcome, exit_code, error)
        from closuretrace.analysis import analyse

        try:
            self.session = analyse(recording, alive_chain_skip=alive_chain_skip)
        finally:
            if recording.live is not None:
                recording.live.release()
        return self.session

    def _unhook(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()
        for probe in self.probes:
            with contextlib.suppress(Exception):
                probe.stop()
        if STATE.profiler is self:
            STATE.profiler = None

    def _release(self) -> None:
        self.registry.finish()
        self.heap.samples.clear()

    def _samples(self) -> Iterator[tuple[str, int, Any]]:
        for name, entries in list(self.heap.samples.items()):
            for cycle, ref in entries:
                obj = ref()
                if obj is not None:
                    yield name, cycle, obj
                del obj

    @property
    def census(self) -> list[dict[str, int]]:
        """Per cycle, type name -> live instances (rebuilt from the stored changes)."""
        out: list[dict[str, int]] = []
        current: dict[str, int] = {}
        for changes in self._census_changes:
            current = {**current, **changes}
            out.append({t: n for t, n in current.items() if n})
        return out

    def _own_objects(self) -> Iterable[Any]:
        yield self.cycles
        yield self._census_changes
        yield self.events
        yield self._cleanups
        yield self.probes
        yield from self.probes
        if self.recording is not None:
            yield self.recording
            yield self.recording.census
            yield from self.recording.census
            yield self.recording.metrics
            yield from self.recording.metrics
            yield self.recording.cycles
            yield self.recording.closures
            yield self.recording.events
        for c in self.cycles:
            yield c
            yield c.metrics
            yield c.closures_alive_by_factory
        for e in self.events:
            yield e
            yield e.detail
        yield from self.registry.own_objects()
        yield from self._forked.own_objects()
        yield from self.heap.own_objects()


def library_versions() -> dict[str, str]:
    """closuretrace's version and those of the libraries the program imported (never importing them)."""
    out = {"closuretrace": __version__}
    for name in ("tensorflow", "keras", "tf_keras", "jax", "torch", "keras_tuner", "scikeras", "optuna", "numpy"):
        mod = sys.modules.get(name)
        v = getattr(mod, "__version__", None)
        if isinstance(v, str):
            out[name] = v
    return out
