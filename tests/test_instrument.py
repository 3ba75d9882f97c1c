import functools
import gc
import sys
import weakref

import numpy as np
import pytest

import closuretrace
from closuretrace.instrument.captures import describe_captures, nbytes_of, safe_repr
from closuretrace.instrument.registry import ClosureRegistry


class Payload:
    def __init__(self, n):
        self.data = bytearray(n)


@closuretrace.track
def outer(value):
    def inner(x):
        return x + len(value.data)

    return inner


def test_tracked_factory_is_transparent_without_a_profiler():
    f = outer(Payload(3))
    assert f(1) == 4
    assert outer.__name__ == "outer" and outer.__wrapped__ is not None


def test_registry_holds_closures_and_captures_only_weakly():
    with closuretrace.Profiler() as prof:
        payload = Payload(1000)
        payload_ref = weakref.ref(payload)
        f = outer(payload)
        f_ref = weakref.ref(f)
        rec = prof.registry.lookup(f)
        assert rec is not None and rec.factory == "test_instrument.outer"
        del f, payload
        gc.collect()
        assert f_ref() is None, "the tool kept the closure alive"
        assert payload_ref() is None, "the tool kept a captured value alive"
        assert rec.collected_cycle == 0
    assert prof.session.closures[0].captures[0].name == "value"


def test_ids_are_reused_and_recorded_as_such():
    clock = [0]
    reg = ClosureRegistry(clock=lambda: clock[0])

    def make(i):
        def g():
            return i

        return g

    # One closure alive at a time, as in `f = factory(i)` in a loop: CPython hands the freed address back.
    f = None
    for i in range(6):
        f = make(i)
        reg.register(f, source="test")
        clock[0] += 1
    recs = reg.records
    assert len(recs) == 6
    assert [r.collected_cycle is not None for r in recs] == [True] * 5 + [False]
    reused = [r for r in recs if r.reused_id_of is not None]
    assert reused, "no id was reused although every old closure was freed"
    for r in reused:
        assert recs[r.reused_id_of - 1].id == r.id
    del f


def test_register_twice_is_one_record_with_both_roles():
    reg = ClosureRegistry(clock=lambda: 0)
    f = outer(Payload(1))
    a = reg.register(f, source="keras", role="loss")
    b = reg.register(f, source="keras", role="metric")
    assert a is b and a.roles == ["loss", "metric"] and len(reg.records) == 1


def test_refcount_is_the_one_seen_from_outside():
    reg = ClosureRegistry(clock=lambda: 0)
    f = outer(Payload(1))
    holders = [f, f]
    reg.register(f, source="test")
    reg.finish()
    # `f` and two list slots; sys.getrefcount's own argument is not counted.
    assert reg.records[0].refcount_at_end == sys.getrefcount(f) - 1 == 3
    del holders


def test_sizes_are_read_without_copying():
    big = np.zeros((1024, 1024), dtype=np.float32)
    assert nbytes_of(big) == 4 * 1024 * 1024
    view = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=np.uint8), shape=(1 << 30,), strides=(0,))
    assert nbytes_of(view) == 1 << 30  # a 1 GiB view over 1 byte: metadata only
    assert nbytes_of(b"x" * 100) == sys.getsizeof(b"x" * 100)
    assert nbytes_of([1, 2]) == sys.getsizeof([1, 2]) + 2 * sys.getsizeof(1)
    assert nbytes_of(object()) is None


class Hostile:
    def __repr__(self):
        raise RuntimeError("no")


class Huge:
    def __repr__(self):
        return "x" * 10_000_000


class Recursive:
    def __repr__(self):
        return repr(self)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (Hostile(), "repr raised RuntimeError"),
        (Recursive(), "repr recursed"),
        (np.zeros((3, 4), dtype=np.int8), "<ndarray shape=3x4 dtype=int8>"),
    ],
)
def test_safe_repr(obj, expected):
    assert expected in safe_repr(obj)


def test_huge_repr_is_truncated():
    assert len(safe_repr(Huge())) <= 120


def test_captures_of_partials_and_objects():
    def loss(a, b, scale=1.0):
        return a

    p = functools.partial(loss, scale=2.5)
    caps = describe_captures(p)
    assert [(c.name, c.type, c.repr) for c in caps] == [("scale", "float", "2.5")]

    class Obj:
        def __init__(self):
            self.factor = 3
            self._private = 4

        def __call__(self, a, b):
            return a

    assert [(c.name, c.repr) for c in describe_captures(Obj())] == [("factor", "3")]
