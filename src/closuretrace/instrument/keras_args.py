"""What the Keras hooks read from a ``compile`` call: its arguments by name, the callables in a loss/metric
structure, and weak serials that identify models and optimizers without keeping them alive.

Nothing here imports Keras.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Iterator
from typing import Any

#: Nested loss/metric structures deeper than this or with more leaves than this are not walked further.
_MAX_DEPTH = 16
_MAX_LEAVES = 1000


class WeakSerials:
    """A stable serial per object, held through weak references: ``serial(obj)`` is the same for one object
    and never keeps it alive. Objects that cannot be weakly referenced get ``None``.

    Identity, not ``==``/``hash``: a model class with its own ``__eq__`` cannot confuse it.
    """

    def __init__(self) -> None:
        self._next = 1
        self._refs: dict[int, weakref.ref[Any]] = {}
        self._serials: dict[int, int] = {}

    def serial(self, obj: Any) -> int | None:
        oid = id(obj)
        ref = self._refs.get(oid)
        if ref is not None and ref() is obj:
            return self._serials[oid]
        try:
            ref = weakref.ref(obj, functools.partial(self._dead, oid))
        except TypeError:
            return None
        n = self._next
        self._next += 1
        self._refs[oid] = ref
        self._serials[oid] = n
        return n

    def _dead(self, oid: int, ref: weakref.ref[Any]) -> None:
        if self._refs.get(oid) is ref:
            del self._refs[oid]
            del self._serials[oid]

    def clear(self) -> None:
        self._refs.clear()
        self._serials.clear()


def iter_callables(structure: Any) -> Iterator[Any]:
    """Callables in a nested dict/list/tuple of losses or metrics; strings (Keras names) and ``None`` skipped.

    >>> import functools
    >>> [getattr(f, "__name__", "partial") for f in iter_callables({"a": [len, "mse", None], "b": (abs,)})]
    ['len', 'abs']
    """
    stack: list[tuple[Any, int]] = [(structure, 0)]
    leaves = 0
    while stack and leaves < _MAX_LEAVES:
        item, depth = stack.pop()
        if item is None or isinstance(item, (str, bytes)):
            continue
        if isinstance(item, dict):
            if depth < _MAX_DEPTH:
                stack.extend((v, depth + 1) for v in reversed(list(item.values())))
            continue
        if isinstance(item, (list, tuple)):
            if depth < _MAX_DEPTH:
                stack.extend((v, depth + 1) for v in reversed(item))
            continue
        leaves += 1
        if callable(item):
            yield item


def describe_optimizer(opt: Any, serials: WeakSerials) -> str:
    """``"string 'adam'"`` for a Keras name, ``"instance Adam #k"`` (k stable per instance) for an object."""
    if isinstance(opt, str):
        return f"string {opt!r}"
    if opt is None:
        return "none"
    if isinstance(opt, dict):
        return f"config {opt.get('class_name', '?')!s}"
    n = serials.serial(opt)
    return f"instance {type(opt).__name__} #{n if n is not None else '?'}"


def bound_arguments(
    sig: inspect.Signature | None, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """compile()'s arguments by name, defaults included; ``None`` if they do not fit its signature."""
    if sig is None:
        return dict(kwargs)
    try:
        bound = sig.bind(model, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self", None)
    return out


def strings_in(structure: Any) -> Iterator[str]:
    """Keras names (strings) in a nested loss structure, for display."""
    stack: list[tuple[Any, int]] = [(structure, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            yield item
        elif depth < _MAX_DEPTH and isinstance(item, dict):
            stack.extend((v, depth + 1) for v in reversed(list(item.values())))
        elif depth < _MAX_DEPTH and isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in reversed(item))
