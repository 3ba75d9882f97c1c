"""Which frameworks the profiled program imported, and whether the hooks cover them.

A ``framework`` event is recorded for each Keras the hooks saw imported (``hooked`` true when its ``compile`` and
``fit`` were wrapped) and, when recording stops, for each framework in :data:`UNHOOKED` that the program
imported: closuretrace measures a program that uses them, but no call of theirs ends a cycle by itself. The
analysis reads these events (:mod:`closuretrace.analysis.frameworks`) to say so instead of only "too few cycles".

Nothing here imports any framework: it reads ``sys.modules``.
"""

from __future__ import annotations

import sys
from typing import Any

#: Frameworks whose training calls closuretrace does not hook: module name -> what to call it.
UNHOOKED: dict[str, str] = {
    "torch": "PyTorch (torch)",
    "lightning": "Lightning (lightning)",
    "pytorch_lightning": "PyTorch Lightning (pytorch_lightning)",
    "jax": "JAX (jax)",
    "flax": "Flax (flax)",
    "mxnet": "MXNet (mxnet)",
    "paddle": "PaddlePaddle (paddle)",
}


def version_of(name: str) -> str | None:
    """``__version__`` of the already imported top-level module of ``name``, if any (never imports it)."""
    mod = sys.modules.get(name.split(".")[0])
    v = getattr(mod, "__version__", None)
    return v if isinstance(v, str) else None


def keras_api(top: str, module: Any) -> str:
    """``"2"`` for Keras 2 (``tf_keras``, or a standalone ``keras`` 2.x), ``"3"`` for Keras 3."""
    if top == "tf_keras":
        return "2"
    v = getattr(module, "__version__", "")
    return "2" if isinstance(v, str) and v.startswith("2.") else "3"


def record_framework(profiler: Any, name: str, module: Any, *, hooked: bool, keras: str | None = None) -> None:
    """A ``framework`` event for ``name`` (never raises: it runs inside the program's import)."""
    if profiler is None:
        return
    try:
        detail: dict[str, Any] = {"name": name, "hooked": hooked}
        v = getattr(module, "__version__", None)
        if isinstance(v, str):
            detail["version"] = v
        if keras is not None:
            detail["keras"] = keras
        profiler.record_event("framework", **detail)
    except Exception:
        pass


def record_unhooked(profiler: Any) -> None:
    """A ``framework`` event (``hooked`` false) for each framework of :data:`UNHOOKED` the program imported."""
    for name in UNHOOKED:
        mod = sys.modules.get(name)
        if mod is not None:
            record_framework(profiler, name, mod, hooked=False)
