"""One scenario of ``closuretrace compare``, in the process that runs it::

    python -m closuretrace.experiment.worker --spec '{"strategy": "recreate", ...}' --out result.json

The loop is the seed's (its MLP, its data, ``batch_size=128``), run under :class:`closuretrace.Profiler` exactly as
``closuretrace profile`` runs a program: each ``fit()`` ends a cycle, the probes run after ``gc.collect()``, and
the verdicts, closure records and growing types are the profiler's own. On top of that the worker records what
the profiler cannot know: seconds per cycle split into compile and fit (the probes' own time left out), new
traces of the model's train function per cycle, the final loss and accuracy, and the seed's arithmetic: the
loss ``evaluate()`` reports for the final model minus the plain cross-entropy computed here from its
predictions (``offset``, which is the captured value when the closure's value really reaches the loss).

The result is one JSON object written to ``--out`` (or printed on stdout without it). Progress goes to stdout as
``@closuretrace progress <done> <total>`` lines. Whatever goes wrong, the worker writes a result with ``error``
set, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any

from closuretrace.experiment.scenarios import Scenario
from closuretrace.outcome import COMPLETED, outcome_of
from closuretrace.units import finite_or_none

PROGRESS_PREFIX = "@closuretrace progress"
FACTORY = "outer_loss"
#: Profiler growing types kept per scenario (the full list is in a ``closuretrace profile`` report).
MAX_TYPES = 8


def outer_mean_loss(args: Any) -> Any:
    """The seed's factory for an array capture: cross-entropy plus the mean of the captured array."""
    from closuretrace.examples.seed import keras_module

    keras = keras_module()
    ops = getattr(keras, "ops", None)
    if ops is not None:
        mean = ops.mean
    else:  # Keras 2: TensorFlow's own
        import tensorflow as tf

        mean = tf.reduce_mean

    def loss_function(y_true: Any, y_pred: Any) -> Any:
        return keras.losses.categorical_crossentropy(y_true, y_pred) + mean(args)

    return loss_function


def make_capture(kind: str, value: float, nbytes: int) -> Any:
    """The value the closure captures: ``value`` itself, or ``nbytes`` of float32 elements all equal to it (a
    tensor and a variable of the Keras and backend the seed uses: :func:`closuretrace.examples.seed.use_keras`)."""
    if kind == "scalar":
        return float(value)
    import numpy as np

    from closuretrace.examples.seed import keras_module

    arr = np.full(max(1, nbytes // 4), value, dtype=np.float32)
    if kind == "numpy":
        return arr
    keras = keras_module()
    multi = hasattr(keras, "ops")  # Keras 3; Keras 2 is TensorFlow's
    if kind == "tensor":
        if multi:
            return keras.ops.convert_to_tensor(arr)
        import tensorflow as tf

        return tf.constant(arr)
    if kind == "variable":
        if multi:
            return keras.Variable(arr, trainable=False, name="captured")
        import tensorflow as tf

        return tf.Variable(arr, trainable=False, name="captured")
    raise ValueError(f"unknown capture kind {kind!r}")


def capture_nbytes(capture: Any) -> int:
    nbytes = getattr(capture, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        import numpy as np

        return int(np.asarray(capture).nbytes)
    except Exception:
        return sys.getsizeof(capture)


def traced_functions(fn: Any, depth: int = 4) -> list[Any]:
    """The ``tf.function`` objects reachable from ``fn`` through closure cells of plain functions (Keras's train
    function wraps its ``tf.function`` steps in closures): objects whose class has
    ``experimental_get_tracing_count``. Nothing else is looked into, so no object's ``__getattr__`` runs."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = [(fn, 0)]
    while stack:
        obj, d = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if callable(getattr(type(obj), "experimental_get_tracing_count", None)):
            found.append(obj)
            inner = getattr(type(obj), "python_function", None)
            if inner is not None and d < depth:
                stack.append((obj.python_function, d + 1))
            continue
        if not isinstance(obj, types.FunctionType) or d >= depth:
            continue
        for cell in obj.__closure__ or ():
            try:
                stack.append((cell.cell_contents, d + 1))
            except ValueError:  # empty cell
                continue
        wrapped = obj.__dict__.get("__wrapped__")
        if wrapped is not None:
            stack.append((wrapped, d + 1))
    stack.clear()
    return found


class TraceCounter:
    """New traces of a model's train function since the last call (a new train function starts at zero).

    The functions are remembered through weak references only: holding them would keep old traces alive and
    change what the profiler measures.
    """

    def __init__(self) -> None:
        # id(tf.function) -> (weak reference to it, tracing count last seen)
        self._seen: dict[int, tuple[weakref.ref[Any], int]] = {}

    def new_traces(self, model: Any) -> int:
        total = 0
        for f in traced_functions(getattr(model, "train_function", None)):
            try:
                count = int(f.experimental_get_tracing_count())
            except Exception:
                continue
            prev = self._seen.get(id(f))
            total += count - (prev[1] if prev is not None and prev[0]() is f else 0)
            try:
                self._seen[id(f)] = (weakref.ref(f), count)
            except TypeError:
                pass
        self._seen = {k: v for k, v in self._seen.items() if v[0]() is not None}
        return total

    def clear(self) -> None:
        self._seen.clear()


def crossentropy(y: Any, p: Any) -> float:
    """Mean categorical cross-entropy of predictions ``p`` for one-hot ``y``, as Keras defines it."""
    import numpy as np

    eps = 1e-7
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-np.sum(np.asarray(y, dtype=np.float64) * np.log(p), axis=-1)))


def run_scenario(spec: Scenario, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run ``spec`` in this process and return its result (see :class:`closuretrace.session.ScenarioResult`)."""
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "strategy": spec.strategy,
        "capture": spec.capture,
        "compile": spec.compile,
        "keras": spec.keras,
        "backend": spec.backend,
        "pid": os.getpid(),
        "error": None,
    }
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = spec.backend  # before Keras is imported (the pool sets it too)
    import numpy as np

    from closuretrace.examples import seed

    seed.use_keras(spec.keras)
    keras = seed.keras_module()
    timings: dict[str, float] = {"import": time.perf_counter() - t_start}
    tf: Any = sys.modules.get("tensorflow") if spec.backend == "tensorflow" else None
    if spec.threads and tf is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
            tf.config.threading.set_inter_op_parallelism_threads(spec.threads)
        except RuntimeError:
            pass  # already initialised: keep TensorFlow's default
    from closuretrace.profiler import ProfileOptions, Profiler

    steps: list[dict[str, Any]] = []
    history: dict[str, float] = {}
    prof = Profiler(ProfileOptions(warmup=spec.warmup), argv=["closuretrace.experiment.worker", spec.name])
    outcome = COMPLETED
    try:
        history = _run_loop(spec, prof, out, steps, timings, progress)
    except Exception as exc:
        outcome = outcome_of(exc)
        out["error"] = "".join(traceback.format_exception(exc))[-4000:]
    except BaseException as exc:  # Ctrl-C, SIGTERM: record what ran, then stop as asked
        if prof.session is None and prof.cycles:
            prof.finish(outcome_of(exc))
        raise
    # Like a program that has ended: the loop's objects (model, closures, captures) were its locals and are gone,
    # so the retention chains start from what the run left behind, not from the live model.
    t = time.perf_counter()
    from closuretrace.instrument.state import STATE

    if STATE.profiler is not prof:  # failed before the profiler started: an empty session, the error recorded
        prof.start()
    session = prof.finish(outcome)
    timings["analysis"] = time.perf_counter() - t

    out["session"] = {
        "cycles": [c.to_dict() for c in session.cycles],
        "verdicts": [_verdict(v) for v in session.verdicts],
        "growing_types": [_growing(g) for g in session.growing_types[:MAX_TYPES]],
        "retention_roots": sorted({c.root for c in session.retention if c.found and c.root}),
        "events": len(session.events),
    }
    recs = [r for r in session.closures if r.factory == FACTORY]
    out["closures_created"] = len(recs)
    out.setdefault("closures_alive_end", sum(1 for r in recs if r.alive_at_end))
    out["closure_ids_reused"] = sum(1 for r in recs if r.reused_id_of is not None)
    out["steps"] = steps
    out["final_loss"] = finite_or_none(history.get("loss"))
    out["final_accuracy"] = finite_or_none(history.get("accuracy"))
    timings["total"] = time.perf_counter() - t_start
    out["timings"] = timings
    out["versions"] = {"keras": str(keras.__version__), "numpy": str(np.__version__)}
    for name in ("tensorflow", "jax", "torch"):
        mod = sys.modules.get(name)
        if mod is not None and isinstance(getattr(mod, "__version__", None), str):
            out["versions"][name] = str(mod.__version__)
    out["versions"]["backend"] = spec.backend
    return out


def _run_loop(
    spec: Scenario,
    prof: Any,
    out: dict[str, Any],
    steps: list[dict[str, Any]],
    timings: dict[str, float],
    progress: Callable[[int, int], None] | None,
) -> dict[str, float]:
    """Set up, start ``prof``, run the cycles and evaluate the final model; return the last fit's history.

    Everything the loop makes is a local of this function, so it is gone when the profiler analyses the run.
    """
    from closuretrace.examples import data, seed
    from closuretrace.instrument.track import track

    keras = seed.keras_module()
    t_setup = time.perf_counter()
    ds = data.load(spec.data, spec.samples)
    out["data"] = ds.source
    out["samples"] = len(ds.x)
    capture = make_capture(spec.capture, spec.capture_value, spec.capture_bytes)
    out["capture_nbytes"] = capture_nbytes(capture)
    raw_factory = seed.outer_loss if spec.capture == "scalar" else outer_mean_loss
    model = seed.build_model()
    optimizer = keras.optimizers.Adam()
    counter = TraceCounter()
    history: dict[str, float] = {}
    timings["setup"] = time.perf_counter() - t_setup

    prof.start()
    t_loop = time.perf_counter()
    factory = track(raw_factory, name=FACTORY)
    loss = factory(capture) if spec.strategy == "reuse" or spec.compile == "once" else None
    compile_first = 0.0
    if spec.compile == "once":
        t = time.perf_counter()
        model.compile(optimizer, loss=loss, metrics=["accuracy"])
        compile_first = time.perf_counter() - t
    for cycle in range(spec.cycles):
        compile_s = compile_first if cycle == 0 else 0.0
        if spec.compile != "once":
            fn = loss if loss is not None else factory(capture)
            opt: Any = "adam" if spec.compile == "new-optimizer" else optimizer
            t = time.perf_counter()
            model.compile(opt, loss=fn, metrics=["accuracy"])
            compile_s = time.perf_counter() - t
            del fn, opt
        n_before = len(prof.cycles)
        t = time.perf_counter()
        hist = model.fit(ds.x, ds.y, batch_size=spec.batch_size, epochs=spec.epochs, verbose=0)
        fit_s = time.perf_counter() - t
        if len(prof.cycles) > n_before:  # the fit hook ended a cycle inside fit(): not the loop's time
            fit_s -= prof.cycles[-1].probe_seconds
        history = {k: float(v[-1]) for k, v in hist.history.items() if v}
        del hist
        steps.append({"cycle": cycle, "compile_s": compile_s, "fit_s": fit_s, "traces": counter.new_traces(model)})
        if progress is not None:
            progress(cycle + 1, spec.cycles)
    timings["cycles"] = time.perf_counter() - t_loop
    # Closures alive when the last cycle was measured (the model still holds the one it was compiled with).
    last = prof.cycles[-1] if prof.cycles else None
    out["closures_alive_end"] = last.closures_alive_by_factory.get(FACTORY, 0) if last is not None else 0
    del last

    # The seed's arithmetic, after the measured cycles (evaluate() and predict() trace functions of their own,
    # which no cycle counts).
    t = time.perf_counter()
    out.update(_offset(model, ds, spec.batch_size))
    timings["evaluate"] = time.perf_counter() - t
    counter.clear()
    return history


def _offset(model: Any, ds: Any, batch_size: int) -> dict[str, float | None]:
    """``evaluate()``'s loss for the final model, the plain cross-entropy of its predictions, and their
    difference: the value the closure adds, when it really reaches the loss."""
    result = model.evaluate(ds.x, ds.y, batch_size=batch_size, verbose=0, return_dict=True)
    preds = model.predict(ds.x, batch_size=batch_size, verbose=0)
    ce = crossentropy(ds.y, preds)
    eval_loss = float(result["loss"])
    return {
        "eval_loss": finite_or_none(eval_loss),
        "crossentropy": finite_or_none(ce),
        "offset": finite_or_none(eval_loss - ce),
    }


def _verdict(v: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d: dict[str, Any] = asdict(v)
    return d


def _growing(g: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d: dict[str, Any] = asdict(g)
    return d


def _progress_line(done: int, total: int) -> None:
    sys.stdout.write(f"{PROGRESS_PREFIX} {done} {total}\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closuretrace.experiment.worker", description=__doc__)
    parser.add_argument("--spec", required=True, help="the scenario as JSON (Scenario.to_dict())")
    parser.add_argument("--out", default=None, help="write the result here (default: stdout)")
    opts = parser.parse_args(argv)
    spec = Scenario.from_dict(json.loads(opts.spec))
    try:
        result = run_scenario(spec, progress=_progress_line if opts.out else None)
    except Exception as exc:  # an error before the loop (import, data): still one result
        result = {
            "strategy": spec.strategy,
            "capture": spec.capture,
            "compile": spec.compile,
            "pid": os.getpid(),
            "error": "".join(traceback.format_exception(exc))[-4000:],
        }
    from closuretrace.experiment import write_result

    return write_result(result, opts.out)


if __name__ == "__main__":
    from closuretrace.experiment import exit_now

    exit_now(main())
