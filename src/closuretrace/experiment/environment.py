"""The libraries the experiment ran on, and one check by behaviour of the installed TensorFlow.

Run in its own process::

    python -m closuretrace.experiment.environment --out env.json

The check: fit a small model (the seed's MLP, a few batches), hold a weak reference to every ``FuncGraph`` the
fit traced, delete the model and every reference to it, call ``keras.backend.clear_session()`` and
``gc.collect()``, and count the graphs still alive. On a TensorFlow where traced graphs are freed with their
model, none outlive it. Where some do, the check removes the entries the fit added to TensorFlow's global
gradient registry (custom-gradient functions registered during tracing) and collects again: if that frees them,
the registry is what kept them alive. Versions come from the modules themselves, so the report says which
TensorFlow the numbers belong to; a reader on another version should rerun ``closuretrace compare`` there.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import traceback
import weakref
from typing import Any


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's global gradient registry (a private dict), or None where this TensorFlow has none."""
    ops = sys.modules.get("tensorflow.python.framework.ops")
    for name in ("gradient_registry", "_gradient_registry"):
        reg = getattr(ops, name, None)
        table = getattr(reg, "_registry", None)
        if isinstance(table, dict):
            return table
    return None


def _func_graphs() -> list[Any]:
    mod = sys.modules.get("tensorflow.python.framework.func_graph")
    base = getattr(mod, "FuncGraph", None)
    if base is None:
        return []
    return [o for o in gc.get_objects() if isinstance(o, base)]


def graph_leak_check(samples: int = 256) -> dict[str, Any]:
    """Do the FuncGraphs traced by ``fit()`` outlive their model? Plain data; see the module docstring."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow  # noqa: F401  (the probes below read its modules)

    from closuretrace.examples import data, seed

    ds = data.synthetic(samples)
    gc.collect()
    before = {id(g) for g in _func_graphs()}
    registry = _gradient_registry()
    keys_before = set(registry) if registry is not None else set()

    model = seed.build_model()
    model.compile(keras.optimizers.Adam(), loss=seed.outer_loss(10.0), metrics=["accuracy"])
    model.fit(ds.x, ds.y, batch_size=128, epochs=1, verbose=0)
    traced = [g for g in _func_graphs() if id(g) not in before]
    refs = [weakref.ref(g) for g in traced]
    del traced
    added = sorted(set(registry) - keys_before) if registry is not None else []

    model_ref = weakref.ref(model)
    del model
    keras.backend.clear_session()
    gc.collect()
    alive = sum(1 for r in refs if r() is not None)
    out: dict[str, Any] = {
        "graphs_traced": len(refs),
        "graphs_alive_after_delete": alive,
        "model_freed": model_ref() is None,
        "graphs_outlive_model": alive > 0,
        "registry_entries_added": len(added) if registry is not None else None,
        "registry_holds_graphs": None,
        "graphs_alive_after_registry_cleared": None,
    }
    if alive and registry is not None and added:
        for key in added:
            registry.pop(key, None)
        gc.collect()
        after = sum(1 for r in refs if r() is not None)
        out["graphs_alive_after_registry_cleared"] = after
        out["registry_holds_graphs"] = after < alive
    elif registry is not None:
        out["registry_holds_graphs"] = False
    return out


def describe(check: dict[str, Any]) -> str:
    """One sentence for the report, from the check's numbers."""
    if check.get("error"):
        return f"The graph-lifetime check failed: {str(check['error']).splitlines()[-1]}"
    n, alive = check.get("graphs_traced", 0), check.get("graphs_alive_after_delete", 0)
    if not check.get("graphs_outlive_model"):
        return (
            f"Traced graphs are freed with their model in this TensorFlow: {n} FuncGraphs traced by one fit, "
            "none alive after the model was deleted."
        )
    tail = ""
    if check.get("registry_holds_graphs"):
        tail = (
            f"; removing the {check.get('registry_entries_added')} entries that fit added to TensorFlow's gradient "
            f"registry freed them ({check.get('graphs_alive_after_registry_cleared')} left), so that registry "
            "keeps them alive (the custom-gradient registry leak is present)"
        )
    elif check.get("registry_holds_graphs") is False:
        tail = "; TensorFlow's gradient registry is not what holds them"
    return (
        f"Traced graphs outlive their model in this TensorFlow: {alive} of the {n} FuncGraphs traced by one fit "
        f"were still alive after the model was deleted, keras.backend.clear_session() and gc.collect(){tail}."
    )


def versions() -> dict[str, str]:
    """Versions of the modules already imported (never imports anything)."""
    from closuretrace._version import __version__

    out = {"closuretrace": __version__, "python": platform.python_version()}
    for name in ("tensorflow", "keras", "numpy"):
        v = getattr(sys.modules.get(name), "__version__", None)
        if isinstance(v, str):
            out[name] = v
    return out


def installed_versions() -> dict[str, str]:
    """Versions from package metadata, without importing TensorFlow (for a run whose check failed)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for key, dists in (("tensorflow", ("tensorflow", "tensorflow-cpu", "tf-nightly")), ("keras", ("keras",)),
                       ("numpy", ("numpy",))):
        for dist in dists:
            try:
                out[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closuretrace.experiment.environment", description=__doc__)
    parser.add_argument("--out", default=None, help="write the result here (default: stdout)")
    opts = parser.parse_args(argv)
    result: dict[str, Any] = {"pid": os.getpid(), "error": None}
    try:
        result["graph_check"] = graph_leak_check()
    except Exception as exc:
        result["error"] = "".join(traceback.format_exception(exc))[-4000:]
    result["versions"] = versions()
    result["platform"] = platform.platform()
    result["tf_enable_onednn_opts"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    from closuretrace.experiment import write_result

    return write_result(result, opts.out)


if __name__ == "__main__":
    from closuretrace.experiment import exit_now

    exit_now(main())
