"""The seed's example in Keras 3: an MLP compiled with a closure loss ``outer_loss(10)``, in a loop.

``--strategy recreate`` makes a new closure before every compile (what the seed warns against);
``--strategy reuse`` makes one closure and passes it to every compile; ``--strategy compile-once`` compiles
once and only fits in the loop. Each fit is one cycle::

    closuretrace profile -m closuretrace.examples.seed --strategy recreate --cycles 8
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def outer_loss(args: Any) -> Any:
    """The seed's factory: categorical cross-entropy plus a captured constant."""
    import keras

    def loss_function(y_true: Any, y_pred: Any) -> Any:
        return keras.losses.categorical_crossentropy(y_true, y_pred) + args

    return loss_function


def build_model() -> Any:
    """The seed's MLP: 784 -> 64 (relu) -> 10 (softmax)."""
    import keras

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
    opts = parser.parse_args(argv)

    import keras

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
