"""What ``model.save`` and ``keras.models.load_model`` do with a closure loss, and with the fix.

Run in its own process, in a temporary directory::

    python -m closuretrace.experiment.savecheck --out result.json

Two models, each compiled with a loss that adds a captured value (:data:`VALUE`) to the cross-entropy:

* ``closure``: the seed's ``outer_loss(VALUE)``. Saved to ``.keras``, then loaded plainly; then loaded again
  with ``custom_objects={'loss_function': outer_loss(0.0)}``, which shows whether the file carries the value.
* ``loss_subclass``: :class:`OffsetLoss`, a ``keras.losses.Loss`` subclass whose ``get_config()`` returns the
  value, registered with ``@keras.saving.register_keras_serializable``.

Whether the value survived is measured, not read from a config: the loaded model's loss minus the plain
cross-entropy on a batch must equal :data:`VALUE`. Every error is recorded with its exact text.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import traceback
from typing import Any

#: The captured value: not the seed's 10, so that a default or a stale value cannot pass for it.
VALUE = 7.25
#: |loss - crossentropy - VALUE| below this means the value reached the loaded model's loss.
TOLERANCE = 1e-3
MAX_ERROR = 600

_OffsetLoss: Any = None


def offset_loss_class() -> Any:
    """The fix, defined once per process (registering it needs Keras, which this module does not import)."""
    global _OffsetLoss
    if _OffsetLoss is not None:
        return _OffsetLoss
    import keras

    @keras.saving.register_keras_serializable(package="closuretrace")
    class OffsetLoss(keras.losses.Loss):  # type: ignore[misc]
        """Categorical cross-entropy plus ``offset``; ``get_config`` carries the offset into the saved file."""

        def __init__(self, offset: float = 0.0, name: str = "offset_loss", **kwargs: Any) -> None:
            super().__init__(name=name, **kwargs)
            self.offset = float(offset)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return keras.losses.categorical_crossentropy(y_true, y_pred) + self.offset

        def get_config(self) -> dict[str, Any]:
            config: dict[str, Any] = super().get_config()
            config.update({"offset": self.offset})
            return config

    _OffsetLoss = OffsetLoss
    return OffsetLoss


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _measured_offset(model: Any, x: Any, y: Any) -> float | None:
    """The compiled loss minus the plain cross-entropy, on one batch; None for a model without a loss."""
    import numpy as np

    from closuretrace.experiment.worker import crossentropy

    loss_fn = getattr(model, "loss", None)
    if loss_fn is None:
        return None
    p = model.predict(x, verbose=0)
    value = float(np.mean(np.asarray(loss_fn(y, p))))
    return value - crossentropy(y, p)


def _round_trip(model: Any, path: str, x: Any, y: Any, custom_objects: dict[str, Any] | None) -> dict[str, Any]:
    import keras

    out: dict[str, Any] = {"loaded": False, "error": None, "value_preserved": None, "loaded_value": None}
    try:
        loaded = keras.models.load_model(path, custom_objects=custom_objects)
    except Exception as exc:
        out["error"] = _error_text(exc)
        return out
    out["loaded"] = True
    try:
        value = _measured_offset(loaded, x, y)
    except Exception as exc:
        out["error"] = f"loaded, but its loss failed: {_error_text(exc)}"
        return out
    if value is not None:
        out["loaded_value"] = value
        out["value_preserved"] = abs(value - VALUE) < TOLERANCE
    return out


def _case(model: Any, path: str, x: Any, y: Any, custom_objects: dict[str, Any] | None) -> dict[str, Any]:
    """Save ``model`` to ``path`` and load it back plainly, then (if given) with ``custom_objects``."""
    out: dict[str, Any] = {"saved": False, "loaded": False, "error": None, "value_preserved": None}
    try:
        model.save(path)
    except Exception as exc:
        out["error"] = _error_text(exc)
        return out
    out["saved"] = True
    out["loss_config"] = _loss_config(path)
    plain = _round_trip(model, path, x, y, None)
    out.update({k: plain[k] for k in ("loaded", "error", "value_preserved", "loaded_value")})
    if custom_objects is not None:
        with_custom = _round_trip(model, path, x, y, custom_objects)
        out["custom_objects"] = {
            "passed": {k: _describe(v) for k, v in custom_objects.items()},
            **with_custom,
        }
    return out


def _describe(obj: Any) -> str:
    """``outer_loss.<locals>.loss_function capturing args=0.0`` (modules a closure captures are left out)."""
    import types

    code = getattr(obj, "__code__", None)
    cells = getattr(obj, "__closure__", None) or ()
    names = code.co_freevars if code is not None else ()
    captured = []
    for name, cell in zip(names, cells):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if not isinstance(value, types.ModuleType):
            captured.append(f"{name}={value!r}")
    label = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{label} capturing {', '.join(captured)}" if captured else str(label)


def _loss_config(path: str) -> Any:
    """What the ``.keras`` file stores for the loss (its ``config.json``: ``compile_config.loss``)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except Exception as exc:
        return f"(could not read config.json: {_error_text(exc)})"
    compile_config = config.get("compile_config") or {}
    return compile_config.get("loss")


def run_save_check(directory: str) -> dict[str, Any]:
    """Both cases, saving into ``directory``; plain data."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from closuretrace.examples import data, seed

    ds = data.synthetic(256)
    x, y = ds.x[:128], ds.y[:128]
    results: dict[str, Any] = {"value": VALUE}

    model = seed.build_model()
    model.compile(keras.optimizers.Adam(), loss=seed.outer_loss(VALUE), metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    results["closure"] = _case(
        model, os.path.join(directory, "closure.keras"), x, y, {"loss_function": seed.outer_loss(0.0)}
    )

    OffsetLoss = offset_loss_class()
    model = seed.build_model()
    model.compile(keras.optimizers.Adam(), loss=OffsetLoss(VALUE), metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    results["loss_subclass"] = _case(model, os.path.join(directory, "loss_subclass.keras"), x, y, None)
    results["versions"] = {"keras": str(keras.__version__), "numpy": str(np.__version__)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closuretrace.experiment.savecheck", description=__doc__)
    parser.add_argument("--out", default=None, help="write the result here (default: stdout)")
    opts = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="closuretrace-save-") as tmp:
            result: dict[str, Any] = run_save_check(tmp)
        result["pid"] = os.getpid()
        result["error"] = None
    except Exception as exc:
        result = {"pid": os.getpid(), "error": "".join(traceback.format_exception(exc))[-4000:]}
    from closuretrace.experiment import write_result

    return write_result(result, opts.out)


if __name__ == "__main__":
    from closuretrace.experiment import exit_now

    exit_now(main())


# -- in the conclusion ------------------------------------------------------------------------------------------

def sentences(save: dict[str, Any]) -> list[str]:
    """What the save check found, in the sentences of the compare conclusion (none if it did not run)."""
    closure = save.get("closure") if isinstance(save, dict) else None
    fix = save.get("loss_subclass") if isinstance(save, dict) else None
    if not isinstance(closure, dict) or not isinstance(fix, dict):
        err = save.get("error") if isinstance(save, dict) else None
        return [f"The save check did not run: {_first_line(err)}"] if err else []
    value = save.get("value")
    out = []
    if closure.get("saved") and not closure.get("loaded"):
        text = f"Saving: a closure loss saves, but load_model() fails ({_first_sentence(closure.get('error'))})"
        custom = closure.get("custom_objects")
        if isinstance(custom, dict) and custom.get("loaded"):
            got = custom.get("loaded_value")
            kept = custom.get("value_preserved")
            if kept is False:
                text += (
                    "; with custom_objects it loads, but the loss then adds "
                    f"{_num(got)}, the value of the closure passed at load time, not the saved {_num(value)}"
                )
            elif kept:
                text += "; with custom_objects it loads and the value is the saved one"
        out.append(text + ".")
    elif not closure.get("saved"):
        out.append(f"Saving: a closure loss cannot be saved ({_first_sentence(closure.get('error'))}).")
    else:
        kept = closure.get("value_preserved")
        got = _num(closure.get("loaded_value"))
        out.append(
            "Saving: a closure loss saves and loads"
            + (" with its value." if kept else f", but its value is not preserved (got {got}).")
        )
    if fix.get("loaded") and fix.get("value_preserved"):
        out.append(
            "A keras.losses.Loss subclass whose get_config() returns the value, registered with "
            "@keras.saving.register_keras_serializable, saves and loads with its value "
            f"({_num(fix.get('loaded_value'))})."
        )
    else:
        out.append(
            "The keras.losses.Loss subclass did not round-trip: "
            f"saved {fix.get('saved')}, loaded {fix.get('loaded')}, value preserved {fix.get('value_preserved')}"
            + (f" ({_first_line(fix.get('error'), 110)})" if fix.get("error") else "")
            + "."
        )
    return out


def _num(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "?"
    return "0.00" if abs(x) < 0.005 else f"{x:.2f}"


def _first_sentence(text: Any, limit: int = 160) -> str:
    """``"TypeError: Could not locate function 'f'. Make sure ..."`` -> ``"TypeError: ... function 'f'."``"""
    s = " ".join(str(text or "").split())
    cut = s.find(". ")
    if cut > 0:
        s = s[: cut + 1]
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _first_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
