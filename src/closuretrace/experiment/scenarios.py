"""The scenario matrix of ``closuretrace compare``: which loops run, each in its own process.

Three axes:

* **strategy** -- ``recreate``: a new ``outer_loss(value)`` closure before every ``compile`` (the same captured
  value each time, as the seed's ``outer_loss(10)``); ``reuse``: one closure made before the loop.
* **capture** -- what the closure captures: ``scalar`` (the seed's ``+ 10``), ``numpy`` (a NumPy array),
  ``tensor`` (a TensorFlow tensor of the same size), ``variable`` (a ``keras.Variable`` of the same size). Every
  element is the seed's 10, and the loss adds the mean of the capture, so the loss is always cross-entropy + 10.
* **compile** -- ``new-optimizer``: compile before every fit with the string ``"adam"`` (Keras builds a new
  optimizer each time); ``same-optimizer``: compile before every fit with one ``Adam`` instance (the seed's loop);
  ``once``: compile once, then only fit.

The default matrix keeps every axis but not every combination (each process pays a TensorFlow import):

* the capture axis x both strategies under the seed's compile mode (``same-optimizer``),
* the compile axis x both strategies under the seed's capture (``scalar``),
* ``once`` once: with a single compile there is a single closure, so recreate and reuse are the same scenario;
  it is recorded as ``reuse``.

``full=True`` (``--full``) runs every combination instead (``once`` once per capture kind).

Each scenario also says which Keras (``"3"``: ``keras``; ``"2"``: ``tf_keras``) and which Keras 3 backend it runs
on; its process gets ``KERAS_BACKEND`` set to it (:meth:`Scenario.env`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

STRATEGIES: tuple[str, ...] = ("recreate", "reuse")
CAPTURES: tuple[str, ...] = ("scalar", "numpy", "tensor", "variable")
COMPILES: tuple[str, ...] = ("new-optimizer", "same-optimizer", "once")

#: The seed's choices: the axis every other axis is varied around.
PRIMARY_COMPILE = "same-optimizer"
PRIMARY_CAPTURE = "scalar"

STRATEGY_TEXT = {
    "recreate": "a new outer_loss(value) closure before every compile (same captured value)",
    "reuse": "one closure, made before the loop, passed to every compile",
}
CAPTURE_TEXT = {
    "scalar": "a Python float (the seed's + 10)",
    "numpy": "a NumPy float32 array",
    "tensor": "a TensorFlow tensor (tf.constant)",
    "variable": "a keras.Variable",
}
COMPILE_TEXT = {
    "new-optimizer": "compile before every fit with optimizer='adam' (a new optimizer each time)",
    "same-optimizer": "compile before every fit with one Adam instance (the seed's loop)",
    "once": "compile once, then fit every cycle",
}

#: The seed's constant: every capture kind adds this much to the loss.
CAPTURE_VALUE = 10.0

#: ``--keras`` choices and ``--backend`` choices (Keras 2 runs on TensorFlow only).
KERASES: tuple[str, ...] = ("3", "2")
BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class Scenario:
    """One loop to run in a fresh process, with every setting it needs (plain data: it travels as JSON)."""

    strategy: str
    capture: str
    compile: str
    cycles: int = 8
    epochs: int = 1
    samples: int = 2048
    capture_bytes: int = 8 * 1000**2
    capture_value: float = CAPTURE_VALUE
    data: str | None = None
    warmup: int = 1
    batch_size: int = 128
    #: TensorFlow intra-/inter-op threads in the worker (None: TensorFlow's default); set so that the
    #: scenarios running side by side do not fight over the cores
    threads: int | None = None
    #: the Keras major version ("3": keras, "2": tf_keras) and the Keras 3 backend
    keras: str = "3"
    backend: str = "tensorflow"

    def env(self) -> dict[str, str]:
        """What the scenario's process needs in its environment: ``KERAS_BACKEND``."""
        return {"KERAS_BACKEND": self.backend}

    @property
    def name(self) -> str:
        """``recreate/scalar/same-optimizer``: unique within a matrix."""
        return f"{self.strategy}/{self.capture}/{self.compile}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _ordered(values: Sequence[str], universe: Sequence[str]) -> list[str]:
    return [v for v in universe if v in values]


def matrix(
    strategies: Sequence[str] = STRATEGIES,
    captures: Sequence[str] = CAPTURES,
    compiles: Sequence[str] = COMPILES,
    full: bool = False,
) -> list[tuple[str, str, str]]:
    """``(strategy, capture, compile)`` triples to run, in a stable order; see the module docstring.

    >>> len(matrix()), len(matrix(full=True))
    (11, 20)
    >>> matrix(captures=["scalar"], compiles=["once"])
    [('reuse', 'scalar', 'once')]
    """
    strategies = _ordered(strategies, STRATEGIES)
    captures = _ordered(captures, CAPTURES)
    compiles = _ordered(compiles, COMPILES)
    out: list[tuple[str, str, str]] = []

    def add(s: str, c: str, m: str) -> None:
        if (s, c, m) not in out:
            out.append((s, c, m))

    if not captures or not compiles or (not strategies and compiles != ["once"]):
        return out
    if full:
        for m in compiles:
            for c in captures:
                if m == "once":
                    add("reuse", c, m)
                else:
                    for s in strategies:
                        add(s, c, m)
        return out
    every_cycle = [m for m in compiles if m != "once"]
    primary_compile = PRIMARY_COMPILE if PRIMARY_COMPILE in every_cycle else (every_cycle or ["once"])[0]
    primary_capture = PRIMARY_CAPTURE if PRIMARY_CAPTURE in captures else captures[0]
    # The capture axis under one compile mode ...
    for c in captures:
        if primary_compile == "once":
            add("reuse", c, "once")
        else:
            for s in strategies:
                add(s, c, primary_compile)
    # ... and the compile axis under one capture.
    for m in compiles:
        if m == "once":
            add("reuse", primary_capture, m)
        else:
            for s in strategies:
                add(s, primary_capture, m)
    return out


def design(strategies: Sequence[str], captures: Sequence[str], compiles: Sequence[str], full: bool) -> str:
    """The matrix in words, for the report's settings and the summary."""
    if full:
        return (
            "full matrix: every strategy x capture x compile mode; compile once runs once per capture kind "
            "(with a single compile there is a single closure: recreate and reuse are the same scenario)"
        )
    every_cycle = [m for m in _ordered(compiles, COMPILES) if m != "once"]
    pc = PRIMARY_COMPILE if PRIMARY_COMPILE in every_cycle else (every_cycle or ["once"])[0]
    caps = _ordered(captures, CAPTURES)
    pk = PRIMARY_CAPTURE if PRIMARY_CAPTURE in caps else (caps or ["?"])[0]
    return (
        f"every axis, not every combination: the capture kinds x strategies under compile mode {pc}, and the "
        f"compile modes x strategies under the {pk} capture; compile once runs once (a single compile means a "
        "single closure, so recreate and reuse are the same scenario; it is recorded as reuse). --full runs "
        "every combination"
    )


def parse_list(text: str, universe: Sequence[str], option: str) -> list[str]:
    """``"scalar,numpy"`` -> ``["scalar", "numpy"]`` (order of ``universe``); ``ValueError`` for unknown names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{option}: empty list (choose from {', '.join(universe)})")
    if items == ["all"]:
        return list(universe)
    bad = [t for t in items if t not in universe]
    if bad:
        raise ValueError(f"{option}: unknown {', '.join(repr(b) for b in bad)} (choose from {', '.join(universe)})")
    return _ordered(items, universe)

