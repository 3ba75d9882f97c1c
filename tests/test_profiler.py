"""The profiler on pure-Python programs (no TensorFlow): verdicts, chains, and the observer effect."""

import gc
import sys
import types

import closuretrace
from closuretrace.analysis.stats import fit_slope


def _module(name, source):
    mod = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod


LEAKY = """
leaked = []
def make(i):
    def callback(x):
        return x + i
    return callback
def step(i, keep):
    f = make(i)
    if keep:
        leaked.append(f)
    return f(1)
"""


def test_closure_leak_gets_a_verdict_and_a_chain_naming_the_container():
    mod = _module("ct_leaky_mod", LEAKY)
    try:
        with closuretrace.Profiler() as prof:
            for i in range(7):
                with prof.cycle():
                    mod.step(i, keep=True)
        s = prof.session
        alive = next(v for v in s.verdicts if v.metric == "closures_alive")
        assert alive.leak and alive.slope_per_cycle == 1.0
        assert s.cycles[-1].closures_alive_by_factory["ct_leaky_mod.make"] == 7
        chain = next(c for c in s.retention if "closures_alive" in c.metric)
        assert chain.found, chain.note
        assert chain.root == "ct_leaky_mod.leaked"
        assert chain.born_cycle == 1  # the earliest closure born after the warm-up cycle
        assert not any("closuretrace" in hop for hop in chain.chain), chain.chain
        assert any("stay alive" in a for a in s.advice)
    finally:
        del sys.modules["ct_leaky_mod"]


FLAT = """
last = None
def make(i):
    def callback(x):
        return x + i
    return callback
def step(i):
    global last
    last = make(i)  # replaces, and so frees, the closure of the cycle before
    return last(1)
"""


def test_flat_loop_has_no_leak_verdict_and_closures_are_freed():
    mod = _module("ct_flat_mod", FLAT)
    try:
        with closuretrace.Profiler() as prof:
            for i in range(7):
                with prof.cycle():
                    mod.step(i)
        s = prof.session
        assert not s.leaks(), [v for v in s.verdicts if v.leak]
        assert s.retention == []
        # (keyed by the factory: closures other test modules left alive are adopted too)
        assert [c.closures_alive_by_factory.get("ct_flat_mod.make") for c in s.cycles] == [1] * 7
        records = [r for r in s.closures if r.factory == "ct_flat_mod.make"]
        # each cycle's closure is seen at the end of its cycle and freed in the next one; the last is alive at exit
        assert [(r.created_cycle, r.collected_cycle) for r in records] == [(i, i + 1) for i in range(6)] + [(6, None)]
        assert [r.alive_at_end for r in records] == [False] * 6 + [True]
    finally:
        del sys.modules["ct_flat_mod"]


def test_profiling_does_not_change_the_object_growth_it_measures():
    """The same loop's gc-object growth per cycle, measured natively and by the profiler, agrees."""
    mod = _module("ct_observer_mod", LEAKY)
    try:
        native = []
        for i in range(7):
            mod.step(i, keep=True)
            gc.collect()
            native.append(len(gc.get_objects()))
        mod.leaked.clear()
        with closuretrace.Profiler() as prof:
            for i in range(7):
                with prof.cycle():
                    mod.step(i, keep=True)
        profiled = prof.session.series("gc_objects")
        native_slope = fit_slope(native[1:]).slope
        profiled_slope = fit_slope(profiled[1:]).slope
        assert native_slope > 0
        assert abs(profiled_slope - native_slope) <= 0.5, (native, profiled)
    finally:
        del sys.modules["ct_observer_mod"]


def test_nothing_is_kept_alive_after_the_run():
    import weakref

    mod = _module("ct_alive_mod", LEAKY)
    try:
        with closuretrace.Profiler() as prof:
            for i in range(4):
                with prof.cycle():
                    mod.step(i, keep=True)
        refs = [weakref.ref(f) for f in mod.leaked]
        mod.leaked.clear()
        gc.collect()
        assert all(r() is None for r in refs), "a closure outlived its last user reference"
        assert prof.session.closures, "closures were not recorded at all"
    finally:
        del sys.modules["ct_alive_mod"]


def test_exception_in_a_cycle_still_gives_a_session():
    try:
        with closuretrace.Profiler() as prof:
            with prof.cycle():
                pass
            raise ValueError("boom")
    except ValueError:
        pass
    assert prof.session.run.outcome == "exception"
    assert prof.session.run.error == "ValueError: boom"
    assert closuretrace.instrument.state.active() is None


def test_alive_at_end_means_at_exit_not_at_the_last_cycle():
    def factory(i):
        def f():
            return i
        return f

    with closuretrace.Profiler() as prof:
        for i in range(4):
            with prof.cycle():
                fn = closuretrace.track(factory)(i)
        fn.me = fn  # a reference cycle: only a collection frees it once dropped
        del fn
    session = prof.session
    tracked = [r for r in session.closures if r.source == "track"]  # other modules' closures may be adopted too
    assert len(tracked) == 4
    last = tracked[-1]
    assert session.cycles[-1].closures_alive_by_factory[last.factory] == 1  # alive at the last cycle
    assert last.collected_cycle == len(session.cycles) and not last.alive_at_end


def test_a_second_profiler_cannot_start_while_one_records():
    """Only one profiler records at a time: a second start() is a clear error, touches nothing (no hooks, no
    tracemalloc), and the first keeps recording; once the first has stopped, a new one starts."""
    import tracemalloc

    import pytest

    from closuretrace.instrument.state import STATE

    assert not tracemalloc.is_tracing()
    mod = _module("ct_second_mod", LEAKY)
    try:
        with closuretrace.Profiler() as first:
            with first.cycle():
                mod.step(0, keep=True)
            second = closuretrace.Profiler(closuretrace.ProfileOptions(tracemalloc=True))
            with pytest.raises(RuntimeError, match="another closuretrace Profiler is already recording"):
                second.start()
            with pytest.raises(RuntimeError, match="already recording"), closuretrace.Profiler():
                pass
            assert STATE.profiler is first
            assert not tracemalloc.is_tracing()  # the refused profiler started none of its probes
            for i in range(1, 4):
                with first.cycle():
                    mod.step(i, keep=True)
        assert len(first.session.cycles) == 4
        assert first.session.cycles[-1].closures_alive_by_factory["ct_second_mod.make"] == 4
        assert STATE.profiler is None
        mod.leaked.clear()
        with closuretrace.Profiler() as third:  # the first has stopped: a new one records
            third.end_cycle()
        assert len(third.session.cycles) == 1
        assert second.cycles == [] and second.session is None  # the refused one recorded nothing
    finally:
        del sys.modules["ct_second_mod"]
