"""The seed's example on Keras 3 or Keras 2: an MLP compiled with a closure loss ``outer_loss(10)``, in a loop.

``--strategy recreate`` makes a new closure before every compile (what the seed warns against);
``--strategy reuse`` makes one closure and passes it to every compile; ``--strategy compile-once`` compiles
once and only fits in the loop. ``--keras 2`` runs it on Keras 2 (``tf_keras``, TensorFlow only), ``--keras 3``
(the default) on Keras 3 with the backend ``KERAS_BACKEND`` names. Each fit is one cycle::

    closuretrace profile -m closuretrace.examples.seed --strategy recreate --cycles 8
    closuretrace profile -m closuretrace.examples.seed --keras 2
    KERAS_BACKEND=jax closuretrace profile -m closuretrace.examples.seed
"""

from __future__ import annotations

import argparse
import importlib
import os
from types import ModuleType
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: ``--keras`` -> the module the seed imports.
KERAS_MODULES = {"2": "tf_keras", "3": "keras"}
_keras_name = "keras"


def use_keras(version: str) -> None:
    """Make the seed use Keras ``version`` (``"2"``: ``tf_keras``; ``"3"``: ``keras``); before it builds anything.

    Keras 2 runs on TensorFlow only: a ``KERAS_BACKEND`` other than ``tensorflow`` is refused with ``ValueError``.
    """
    global _keras_name
    if version not in KERAS_MODULES:
        raise ValueError(f"unknown Keras {version!r} (choose from {', '.join(KERAS_MODULES)})")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if version == "2" and backend != "tensorflow":
        raise ValueError(f"Keras 2 (tf_keras) runs on TensorFlow only, not KERAS_BACKEND={backend}")
    _keras_name = KERAS_MODULES[version]


def keras_module() -> ModuleType:
    """The Keras the seed uses (see :func:`use_keras`), imported."""
    return importlib.import_module(_keras_name)


def outer_loss(args: Any) -> Any:
    """The seed's factory: categorical cross-entropy plus a captured constant."""
    keras = keras_module()

    def loss_function(y_true: Any, y_pred: Any) -> Any:
        return keras.losses.categorical_crossentropy(y_true, y_pred) + args

    return loss_function


def build_model() -> Any:
    """The seed's MLP: 784 -> 64 (relu) -> 10 (softmax)."""
    keras = keras_module()

    inp = keras.Input((784,))
    x = keras.layers.Dense(64, activation="relu")(inp)
    out = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=("recreate", "reuse", "compile-once"), default="recreate")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--offset", type=float, default=10.0)
    parser.add_argument("--data", default=None, help="an .npz with x_train/y_train (default: built-in data)")
    parser.add_argument(
        "--keras", choices=tuple(KERAS_MODULES), default="3", help="Keras 3 (keras) or Keras 2 (tf_keras); default 3"
    )
    opts = parser.parse_args(argv)
    try:
        use_keras(opts.keras)
    except ValueError as exc:
        parser.error(str(exc))
    keras = keras_module()

    from closuretrace.examples import data

    ds = data.load(opts.data, opts.samples)
    model = build_model()
    optimizer = keras.optimizers.Adam()
    loss = outer_loss(opts.offset) if opts.strategy != "recreate" else None
    if opts.strategy == "compile-once":
        model.compile(optimizer, loss=loss, metrics=["accuracy"])
    for cycle in range(opts.cycles):
        if opts.strategy != "compile-once":
            fn = loss if loss is not None else outer_loss(opts.offset)
            print(f"cycle {cycle}: loss closure at {id(fn):#x}")
            model.compile(optimizer, loss=fn, metrics=["accuracy"])
        hist = model.fit(ds.x, ds.y, batch_size=128, epochs=opts.epochs, verbose=0)
        print(f"  loss {hist.history['loss'][-1]:.4f}  accuracy {hist.history['accuracy'][-1]:.3f}  ({ds.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
