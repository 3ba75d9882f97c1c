"""Retention chains (closuretrace.analysis.chains): real objects in a throw-away module, exact hop labels."""

from __future__ import annotations

import collections
import functools
import gc
import sys
import time

import pytest

import closuretrace.analysis.chains as chains
from closuretrace.analysis.chains import ChainResult, find_chain
from support import require_module


class Payload:
    """The object a test looks for (weak-referenceable and distinct from everything else)."""


class Holder:
    pass


class Cache:
    pass


class SlotHolder:
    __slots__ = ("cache",)


class SlotCache:
    __slots__ = ("item",)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


class Hostile:
    """Every dunder a careless labeller could call raises."""

    def __getattr__(self, name):
        raise RuntimeError(f"__getattr__({name})")

    def __eq__(self, other):
        raise RuntimeError("__eq__")

    def __hash__(self):
        return 7

    def __repr__(self):
        raise RuntimeError("__repr__")

    @property
    def __class__(self):  # type: ignore[override]
        raise RuntimeError("__class__")


def _make_closure(i):
    def closure_fn():
        return i

    return closure_fn


def _outer(payload):
    def inner():
        return payload

    return inner


M = Payload.__module__  # how this test module is named in labels ("test_chains" or "tests.test_chains")


@pytest.fixture(params=["get_referrers", "forward_scan"])
def scan_mode(request, monkeypatch):
    """Run a test with each way of finding a level's referrers."""
    if request.param == "forward_scan":
        monkeypatch.setattr(chains, "_REFERRERS_MAX_FRONTIER", 0)
    return request.param


def _print(r: ChainResult) -> None:
    print(f"root={r.root!r} found={r.found} note={r.note!r} seconds={r.seconds:.3f}")
    for hop in r.hops:
        print("   ", hop)


# ------------------------------------------------------------------------------------------- scenarios


def test_closures_in_module_level_list(tmpmod, scan_mode):
    tmpmod.leaked = []
    for i in range(3):
        tmpmod.leaked.append(_make_closure(i))
    r = find_chain(tmpmod.leaked[0])
    _print(r)
    assert r.found and r.note is None
    assert r.root == f"{tmpmod.__name__}.leaked"
    assert r.hops == [f"{tmpmod.__name__}.leaked → list", "[0] → function _make_closure.<locals>.closure_fn"]


def test_dict_registry(tmpmod, scan_mode):
    tmpmod.REGISTRY = {"other": Payload(), "k": Payload()}
    r = find_chain(tmpmod.REGISTRY["k"])
    assert r.root == f"{tmpmod.__name__}.REGISTRY"
    assert r.hops == [f"{tmpmod.__name__}.REGISTRY → dict", f"['k'] → Payload ({M})"]


@pytest.mark.parametrize("kind", ["plain", "plain_materialised_dict", "slots"])
def test_instance_attribute_chain(tmpmod, scan_mode, kind):
    if kind == "slots":
        holder, cache = SlotHolder(), SlotCache()
    else:
        holder, cache = Holder(), Cache()
    holder.cache = cache
    cache.item = Payload()
    if kind == "plain_materialised_dict":
        vars(holder)  # a real dict object between the instance and its attribute values
        vars(cache)
        assert any(type(o) is dict for o in gc.get_referents(holder))
    tmpmod.holder = holder
    target = cache.item
    del holder, cache
    r = find_chain(target)
    _print(r)
    h, c = ("SlotHolder", "SlotCache") if kind == "slots" else ("Holder", "Cache")
    assert r.hops == [
        f"{tmpmod.__name__}.holder → {h} ({M})",
        f".cache → {c} ({M})",
        f".item → Payload ({M})",
    ]


def test_closure_cell_names_the_captured_variable(tmpmod, scan_mode):
    tmpmod.keep = _outer(Payload())
    target = tmpmod.keep.__closure__[0].cell_contents
    r = find_chain(target)
    _print(r)
    assert r.hops == [
        f"{tmpmod.__name__}.keep → function _outer.<locals>.inner",
        f"closure cell 'payload' of inner → Payload ({M})",
    ]
    assert any("closure cell 'payload'" in hop for hop in r.hops)


def test_closure_cell_and_tuple_as_targets(tmpmod):
    tmpmod.keep = _outer(Payload())
    cell_hops = find_chain(tmpmod.keep.__closure__[0]).hops
    assert cell_hops[-1] == "closure cell 'payload' of inner → cell"
    assert find_chain(tmpmod.keep.__closure__).hops[-1] == ".__closure__ → tuple"


def test_other_edge_kinds(tmpmod):
    name = tmpmod.__name__

    def g(a, b=[Payload()], *, c={"x": Payload()}):  # noqa: B006, B008 - the defaults are the point
        return a, b, c

    class Klass:
        attr = [Payload()]  # noqa: RUF012

        def method(self):
            return self

    point = collections.namedtuple("point", "x y")
    tmpmod.g = g
    tmpmod.Klass = Klass
    tmpmod.bound = Klass().method
    tmpmod.members = {(1, Payload())}
    tmpmod.pt = point(1, Payload())
    tmpmod.part = functools.partial(print, Payload())
    tmpmod.by_key = {Payload(): 1}

    assert find_chain(g.__defaults__[0]).hops[-1] == "default of parameter 'b' of g → list"
    assert find_chain(g.__kwdefaults__["c"]).hops[-1] == "default of keyword-only parameter 'c' of g → dict"
    assert find_chain(Klass.attr).hops == [
        f"{name}.Klass → class test_other_edge_kinds.<locals>.Klass ({M})",
        "Klass.attr → list",
    ]
    assert find_chain(tmpmod.bound.__self__).hops == [
        f"{name}.bound → bound method test_other_edge_kinds.<locals>.Klass.method",
        f".__self__ → test_other_edge_kinds.<locals>.Klass ({M})",
    ]
    assert find_chain(next(iter(tmpmod.members))[1]).hops == [
        f"{name}.members → set",
        "{member} → tuple",
        f"[1] → Payload ({M})",
    ]
    assert find_chain(tmpmod.pt.y).hops[-1] == f".y → Payload ({M})"
    assert find_chain(tmpmod.part.args[0]).hops[-2:] == [".args → tuple", f"[0] → Payload ({M})"]
    assert find_chain(next(iter(tmpmod.by_key))).hops[-1] == f"<key of dict> → Payload ({M})"


def test_suspended_generator_local(tmpmod):
    box = []

    def gen():
        v = Payload()
        box.append(v)
        yield 1
        yield v

    tmpmod.it = gen()
    next(tmpmod.it)
    target = box.pop()
    r = find_chain(target)
    assert r.hops == [
        f"{tmpmod.__name__}.it → generator test_suspended_generator_local.<locals>.gen",
        f"local variable of generator test_suspended_generator_local.<locals>.gen → Payload ({M})",
    ]


def test_hostile_objects_do_not_break_the_search(tmpmod, scan_mode):
    h = Hostile()
    object.__setattr__(h, "inner", Payload())
    tmpmod.reg = {Hostile(): h}
    r = find_chain(h.inner)
    _print(r)
    assert r.found
    assert r.hops[0] == f"{tmpmod.__name__}.reg → dict"
    assert r.hops[1].startswith("[<") and "Hostile object at 0x" in r.hops[1]
    assert r.hops[1].endswith(f"] → Hostile ({M})")
    assert r.hops[2] == f".inner → Payload ({M})"


def test_ignored_container_is_never_a_link(tmpmod, scan_mode):
    target = Payload()
    decoy = [target]  # the profiler's own list: shorter path than the global dict below
    tmpmod.profiler_state = decoy
    tmpmod.REG = {"x": {"y": target}}
    name = tmpmod.__name__
    plain = find_chain(target)
    assert plain.root == f"{name}.profiler_state"  # without ignore the short path wins
    r = find_chain(target, ignore=[decoy])
    _print(r)
    assert r.root == f"{name}.REG"
    assert r.hops == [f"{name}.REG → dict", "['x'] → dict", f"['y'] → Payload ({M})"]
    assert not any("profiler_state" in hop for hop in r.hops)


# --------------------------------------------------------------------------------------- nothing found


def test_unrooted_cycle_falls_back_to_the_frame_local(scan_mode):
    a, b = Node(), Node()
    a.other, b.other = b, a
    r = find_chain(b)
    _print(r)
    # the garbage collector sees no module global: only this test's local variables hold the cycle
    assert r.found
    assert r.root == "frame of test_unrooted_cycle_falls_back_to_the_frame_local local 'b'"
    assert r.hops == [f"{r.root} → Node ({M})"]
    assert r.note is not None and "no module global holds it" in r.note


def test_unrooted_cycle_not_found_when_frames_are_ignored(scan_mode):
    a, b = Node(), Node()
    a.other, b.other = b, a
    r = find_chain(b, ignore=[sys._getframe()])
    _print(r)
    assert not r.found and r.hops == [] and r.root is None
    assert r.note is not None and r.note.startswith("no path to a module global")


def test_timeout_zero(tmpmod):
    tmpmod.x = [Payload()]
    r = find_chain(tmpmod.x[0], timeout=0)
    assert not r.found and r.hops == [] and r.root is None
    assert r.note is not None and "time limit" in r.note


def test_max_depth(tmpmod):
    tmpmod.deep = [[[[Payload()]]]]
    target = tmpmod.deep[0][0][0][0]
    assert len(find_chain(target).hops) == 5
    r = find_chain(target, max_depth=3, ignore=[sys._getframe()])
    assert not r.found and r.note == "no path to a module global within 3 hops"
    assert find_chain(target, max_depth=5).found


def test_frontier_cap_is_reported(tmpmod):
    target = Payload()
    gc.collect()  # everything older moves to the oldest generation: what follows is scanned in this order
    gc.disable()
    try:
        decoys = [[target] for _ in range(30)]  # referrers found first, leading nowhere
        tmpmod.G = [[target]]  # the rooted path, found last
        r = find_chain(target, max_frontier=5, ignore=[decoys, sys._getframe()])
        full = find_chain(target, ignore=[decoys])
    finally:
        gc.enable()
    _print(r)
    assert not r.found
    assert r.note is not None and "at most 5 objects were followed per hop" in r.note
    assert full.found and full.root == f"{tmpmod.__name__}.G"


# ---------------------------------------------------------------------------------------- side effects


def test_target_refcount_and_heap_unchanged(tmpmod, scan_mode):
    holder = Holder()
    holder.cache = {"k": [Payload()]}
    tmpmod.holder = holder
    tmpmod.fn = _outer(holder)
    target = holder.cache["k"][0]
    del holder
    first = find_chain(target)  # labelling may create instance dicts once; the heap is counted after it
    assert first.found
    assert all(type(x) is str for x in [*first.hops, first.root])
    del first
    before = sys.getrefcount(target)
    r = find_chain(target)
    assert r.found
    assert sys.getrefcount(target) == before
    del r
    gc.collect()
    n0 = len(gc.get_objects())
    for _ in range(5):
        find_chain(target)
    gc.collect()
    n1 = len(gc.get_objects())
    assert abs(n1 - n0) <= 3, (n0, n1)


def test_refcount_unchanged_when_nothing_is_found():
    a, b = Node(), Node()
    a.other, b.other = b, a
    before = sys.getrefcount(b)
    r = find_chain(b, ignore=[sys._getframe()])
    assert not r.found
    assert sys.getrefcount(b) == before


# ------------------------------------------------------------------------------------------ TensorFlow


@pytest.mark.tf
def test_tensorflow_func_graph_chain():
    keras = require_module("keras")
    np = require_module("numpy")
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)

    def fit():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        x = rng.random((32, 4), dtype=np.float32)
        y = rng.random((32, 2), dtype=np.float32)
        model.fit(x, y, epochs=1, verbose=0)
        return model

    first = fit()
    second = fit()
    del first
    gc.collect()
    from tensorflow.python.framework.func_graph import FuncGraph

    graphs = [o for o in gc.get_objects() if type(o) is FuncGraph]
    assert graphs
    # no local variable of this test may hold a graph (it would be the shortest "chain"): index the list
    results = [find_chain(graphs[i], ignore=[graphs]) for i in range(len(graphs))]
    del graphs
    for r in results:
        _print(r)
    print(f"keras fit x2 + {len(results)} chains: {time.perf_counter() - t0:.1f} s")
    in_tf = [r for r in results if r.found and r.root and r.root.startswith("tensorflow.")]
    assert in_tf, [r.root for r in results]
    assert all(len(r.hops) >= 2 for r in in_tf)
    assert second is not None


# ------------------------------------------------------------------------------------------- timing


@pytest.mark.slow
def test_timing_on_a_million_object_heap(tmpmod):
    """Prints how long one search takes with ~1M gc objects (no timing assertion)."""
    tmpmod.noise = [[i] for i in range(1_000_000)]
    target = Payload()
    tmpmod.deep = [[[[[[[target]]]]]]]  # 7 lists: the 8th hop reaches the target
    t = time.perf_counter()
    r = find_chain(target)
    narrow = time.perf_counter() - t
    assert r.found and len(r.hops) == 8
    # a wide frontier (2,000 unrooted referrers per level) takes the forward-scan path
    decoys = [[[target]] for _ in range(2000)]
    t = time.perf_counter()
    w = find_chain(target, ignore=[decoys])
    wide = time.perf_counter() - t
    assert w.found and w.hops == r.hops
    print(
        f"\nheap {len(gc.get_objects()):,} gc objects: 8-hop chain {narrow:.3f} s; "
        f"with 2,000 referrers per level {wide:.3f} s ({len(w.hops)} hops)"
    )


def test_find_root_path_returns_the_objects_of_the_chain(tmpmod):
    from closuretrace.analysis.chain_labels import label_path
    from closuretrace.analysis.chains import find_root_path

    tmpmod.REGISTRY = {"k": [Payload()]}
    target = tmpmod.REGISTRY["k"][0]
    found = find_root_path(target)
    assert found.found and found.root == f"{tmpmod.__name__}.REGISTRY"
    assert found.path[0] is tmpmod.REGISTRY and found.path[-1] is target
    assert label_path(found.path, found.root) == find_chain(target).hops
    assert found.path == []  # label_path empties it: nothing is kept
