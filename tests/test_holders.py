"""What holds the growth (analysis/holders.py, analysis/growth.py): real loops profiled in this process."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import sys
import types
from typing import Any

import pytest

import closuretrace
from closuretrace.analysis.holders import HolderGraph
from closuretrace.session import Session


class Item:
    """What the loops keep: an instance with a list of its own (a few gc objects each)."""

    def __init__(self, i: int) -> None:
        self.payload = [i] * 8


@pytest.fixture
def mod(tmpmod: types.ModuleType) -> types.ModuleType:
    """A fresh module registered in sys.modules (conftest's ``tmpmod``)."""
    return tmpmod


def _profile(body: Any, cycles: int = 6) -> Session:
    prof = closuretrace.Profiler(closuretrace.ProfileOptions(keras=False), argv=["test"])
    prof.start()
    try:
        for c in range(cycles):
            with prof.cycle():
                body(c)
    finally:
        session = prof.finish()
    return session


def _chains(session: Session, metric: str) -> list[Any]:
    return [c for c in session.retention if metric in c.metrics]


def test_two_global_dicts_are_joint_holders(mod: types.ModuleType) -> None:
    mod.A, mod.B = {}, {}

    def body(c: int) -> None:
        items = [Item(c) for _ in range(150)]
        mod.A[c] = items
        mod.B[c] = items

    session = _profile(body)
    assert session.verdict("gc_objects") is not None and session.verdict("gc_objects").leak  # type: ignore[union-attr]
    chains = _chains(session, "gc_objects")
    by_holder = {c.holder: c for c in chains}
    a, b = f"{mod.__name__}.A", f"{mod.__name__}.B"
    assert set(by_holder) == {a, b}, [c.holder for c in chains]
    for me, other in ((a, b), (b, a)):
        c = by_holder[me]
        assert c.role == "cause" and c.found
        assert c.retains is not None and c.retains.share < 0.02  # alone, it frees nothing of the growth
        assert c.joint_with == [other]
        # together they free the loop's objects: the bulk of the growth (in a shared test process other
        # threads' objects grow a little too, so not all of it)
        assert c.joint_retains is not None and c.joint_retains.share >= 0.75
        assert c.chain[0] == f"{me} → dict"
    # the figures survive the JSON
    again = Session.from_dict(json.loads(session.to_json()))
    assert [(c.holder, c.role, c.joint_with) for c in again.retention] == [
        (c.holder, c.role, c.joint_with) for c in session.retention
    ]
    assert again.retention[0].joint_retains == session.retention[0].joint_retains


def test_a_global_that_references_one_old_object_is_not_the_cause(mod: types.ModuleType) -> None:
    mod.HELD = []
    mod.OLDEST = None

    def body(c: int) -> None:
        items = [Item(c) for _ in range(150)]
        mod.HELD.append(items)
        if c == 1:
            mod.OLDEST = items[0]  # a growing type, born after the warm-up, but one object of thousands

    session = _profile(body)
    chains = _chains(session, "gc_objects")
    causes = [c for c in chains if c.role == "cause"]
    assert [c.holder for c in causes] == [f"{mod.__name__}.HELD"]
    assert causes[0].retains is not None and causes[0].retains.share >= 0.9
    assert not any(c.holder == f"{mod.__name__}.OLDEST" and c.role == "cause" for c in session.retention)


def test_growth_spread_over_many_holders_is_a_path(mod: types.ModuleType) -> None:
    def body(c: int) -> None:
        setattr(mod, f"keep{c}", [Item(c) for _ in range(150)])  # a new global per cycle: each holds one cycle

    session = _profile(body)
    chains = _chains(session, "gc_objects")
    assert chains and all(c.role == "path" for c in chains)
    c = chains[0]
    assert c.retains is not None and 0 < c.retains.share < 0.5
    assert c.holder is not None and c.holder.startswith(f"{mod.__name__}.keep")


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no libc to allocate native memory with")
    libc = ctypes.CDLL(name)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return libc


def test_native_growth_is_reported_as_unexplained(mod: types.ModuleType) -> None:
    libc = _libc()
    size = 8 * 1024 * 1024

    def body(c: int) -> None:
        p = libc.malloc(size)
        libc.memset(p, 1, size)  # touched, so it is resident; never freed, and no Python object holds it

    session = _profile(body)
    rss = session.verdict("rss_bytes")
    assert rss is not None and rss.leak, rss
    assert not _chains(session, "rss_bytes"), [c.holder for c in session.retention]
    text = " ".join(session.unexplained)
    assert "RSS growth" in text and "not explained by Python objects" in text and "native memory" in text


def test_large_untracked_buffers_in_an_old_list_are_not_called_native(mod: types.ModuleType) -> None:
    """bytearrays are not tracked by the gc: no birth marker dates them, so the growth set cannot hold the ones an
    old list keeps. The report must say where they are, not blame native memory, and must not make a cause of
    what it cannot date."""
    mod.kept = []
    size = 8 * 1024 * 1024

    def body(c: int) -> None:
        buf = bytearray(size)
        buf[::4096] = b"x" * len(buf[::4096])  # touched, so resident
        mod.kept.append(buf)

    session = _profile(body)
    rss = session.verdict("rss_bytes")
    assert rss is not None and rss.leak, rss
    text = " ".join(session.unexplained)
    assert f"{mod.__name__}.kept holds" in text and "Large buffers the garbage collector does not track" in text, text
    assert "none is shown as the cause" in text and "native memory" not in text
    assert not [c for c in _chains(session, "rss_bytes") if c.role == "cause"]


def test_frame_locals_and_exclusive_bytes_are_counted() -> None:
    gc.collect()
    marker: list[Any] = []
    gc.collect(1)
    kept = [bytes(1000 + i) for i in range(10)]  # bytes are untracked: counted through the list
    shared = sys.intern("a-string-everyone-knows")
    box = [shared, {"k": Item(0)}]
    gc.collect()
    objs = gc.get_objects(2)
    at = next(i for i in range(len(objs) - 1, -1, -1) if objs[i] is marker)
    new = objs[at + 1 :]
    del objs
    graph = HolderGraph(new, ignore=[new])
    try:
        names = {s.name for s in graph.sources if s.kind == "local"}
        assert "frame of test_frame_locals_and_exclusive_bytes_are_counted local 'kept'" in names
        _objects, nbytes = graph.tally()
        assert sum(nbytes.values()) >= sum(len(b) for b in kept)
        leaves = graph.nodes[graph.n_tracked :]
        assert not any(x is shared for x in leaves)
    finally:
        graph.release()
        new.clear()
    del box, kept


# -- the seed on Keras 3 / TensorFlow, and the counterfactual re-run ------------------------------------------

SEED = """
import numpy as np
import keras

def outer_loss(args):
    def loss_function(y_true, y_pred):
        return keras.losses.categorical_crossentropy(y_true, y_pred) + args
    return loss_function

rng = np.random.default_rng(0)
x = rng.random((64, 16)).astype("float32")
y = np.eye(4, dtype="float32")[rng.integers(0, 4, 64)]
inp = keras.Input((16,))
model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.Dense(8)(inp)))
optimizer = keras.optimizers.Adam()
for cycle in range(6):
    model.compile(optimizer, loss=outer_loss(10))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
"""


@pytest.mark.tf
@pytest.mark.slow
def test_seed_gradient_registry_is_the_cause_and_verify_confirms_it(tmp_path: Any) -> None:
    pytest.importorskip("keras")
    import os
    import subprocess

    (tmp_path / "seed.py").write_text(SEED)
    src = os.path.dirname(os.path.dirname(closuretrace.__file__))  # the closuretrace under test, in the child too
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "--verify", "-o", "seed.json", "seed.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "seed.json").read_text())
    graphs = next(v for v in data["verdicts"] if v["metric"] == "tf_func_graphs")
    assert graphs["leak"], graphs
    chain = next(r for r in data["retention"] if "tf_func_graphs" in r["metrics"])
    assert chain["role"] == "cause"
    assert chain["holder"] == "tensorflow.python.framework.ops.gradient_registry._registry"
    assert chain["retains"]["shares"]["tf_func_graphs"] >= 0.9
    assert "FuncGraph" in chain["chain"][-1]
    check = next(v for v in data["verification"] if v["metric"] == "tf_func_graphs")
    assert check["holder"] == chain["holder"]
    assert check["confirmed"] is True, check
    assert check["slope_with_intervention"] <= 0.1 * check["slope_per_cycle"]


def test_files_written_before_the_holder_analysis_still_load() -> None:
    old = {
        "schema_version": 1,
        "run": {"argv": ["x.py"]},
        "retention": [{"target": "t", "metric": "gc_objects", "chain": ["m.x → list"], "found": True}],
    }
    session = Session.from_dict(old)
    chain = session.retention[0]
    assert chain.role == "" and chain.retains is None and chain.holder is None and chain.joint_with == []
    assert chain.is_cause  # read as before: a found chain
    assert session.verification == [] and session.unexplained == []


def test_a_path_is_never_what_advice_builds_on(mod: types.ModuleType) -> None:
    from closuretrace.analysis.advice import _chain_root

    def body(c: int) -> None:
        setattr(mod, f"keep{c}", [Item(c) for _ in range(150)])

    session = _profile(body)
    assert session.retention and session.retention[0].role == "path"
    assert _chain_root(session, "gc_objects") is None


def test_a_cause_says_what_it_rests_on_and_what_verify_found() -> None:
    """A cause is drawn from the references Python's gc sees; the report says so until --verify has cleared the
    holder in a re-run, and then says whether the growth went (on Keras 2 the gradient registry is such a cause
    that --verify does not confirm: something the gc cannot see holds the graphs too)."""
    from closuretrace.renderers.holder_text import holder_sentence
    from closuretrace.session import Retained, RetentionChain, Verification

    chain = RetentionChain(
        target="FuncGraph", metrics=["tf_func_graphs"], chain=["reg → dict"], found=True, role="cause",
        retains=Retained(objects=36, bytes=1000, share=1.0), holder="reg._registry",
    )

    def ver(confirmed: bool) -> Verification:
        return Verification("reg._registry", "tf_func_graphs", 2.0, 2.0, 2.0, 0.0 if confirmed else 2.0,
                            0.0, 2.0, confirmed)

    assert "From the references Python's gc sees" in holder_sentence(chain)
    confirmed = holder_sentence(chain, [ver(True)])
    assert confirmed.endswith("Confirmed by --verify: clearing it every cycle removed the growth.")
    assert "Not confirmed by --verify" in holder_sentence(chain, [ver(False)])
    other = Verification("elsewhere", "tf_func_graphs", 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, False)
    assert "From the references" in holder_sentence(chain, [other])  # another holder's verification says nothing
