"""Wrapping closure factories and cycle-ending functions.

``@closuretrace.track`` on a factory (``outer_loss``) records every callable it returns while a profiler is
active; outside a profiler the wrapper only forwards the call. ``end_cycle_after`` makes each return of a
function end a profiler cycle (``--cycle-on``). Both wrap one function, so no other call gets slower.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

from closuretrace.instrument.state import STATE

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__closuretrace_factory__"


def _factory_name(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return qual if mod in ("__main__", "") else f"{mod}.{qual}"


@overload
def track(factory: F, *, name: str | None = None) -> F: ...
@overload
def track(factory: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def track(factory: Any = None, *, name: str | None = None) -> Any:
    """Record every callable that ``factory`` returns: serial, id, captured values, creation and collection.

    Use it as a decorator, bare or with a display name::

        @closuretrace.track
        def outer_loss(args):
            def loss_function(y_true, y_pred):
                return categorical_crossentropy(y_true, y_pred) + args
            return loss_function

    Tracking starts when a :class:`closuretrace.Profiler` is active (``closuretrace profile`` starts one);
    otherwise the wrapper just calls the factory. The returned callables are held only weakly.
    """

    def decorate(fn: F) -> F:
        if getattr(fn, _MARK, None):
            return fn  # already tracked: never record one closure twice
        label = name or _factory_name(fn)

        @functools.wraps(fn)
        def tracked_factory(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            prof = STATE.profiler
            if prof is not None:
                caller = sys._getframe(1)
                site = f"{caller.f_code.co_filename}:{caller.f_lineno}"
                del caller
                # Our reference: ``result`` here (register counts its own).
                prof.registry.register(
                    result, source="track", factory=label, args=args, kwargs=kwargs, created_at=site, tool_refs=1
                )
            return result

        setattr(tracked_factory, _MARK, label)
        return tracked_factory  # type: ignore[return-value]

    if factory is None:
        return decorate
    if not callable(factory):
        raise TypeError(f"closuretrace.track expects a function, got {type(factory).__name__}")
    return decorate(factory)


def end_cycle_after(fn: F, *, label: str | None = None) -> F:
    """Wrap ``fn`` so that each return of it ends a cycle of the active profiler."""
    if getattr(fn, "__closuretrace_cycle__", False):
        return fn
    cycle_label = label or getattr(fn, "__qualname__", "cycle")

    @functools.wraps(fn)
    def cycle_ending(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        prof = STATE.profiler
        if prof is not None:
            prof.end_cycle(cycle_label)
        return result

    cycle_ending.__closuretrace_cycle__ = True  # type: ignore[attr-defined]
    return cycle_ending  # type: ignore[return-value]
