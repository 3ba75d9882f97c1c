"""The one piece of global state: which recorder, if any, is recording now.

Decorated factories and cycle-ending wrappers look here on every call, so an inactive tool costs one attribute
read. The instrumentation sees the recorder only through :class:`Recorder`, so it does not depend on the
profiler that implements it.
"""

from __future__ import annotations

from typing import Any, Protocol

from closuretrace.session.model import Source


class Registry(Protocol):
    """What the instrumentation calls on the active profiler's closure registry."""

    def register(
        self,
        obj: Any,
        *,
        source: Source,
        factory: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        created_at: str | None = None,
        role: str | None = None,
        tool_refs: int = 0,
    ) -> Any: ...


class Recorder(Protocol):
    """What the instrumentation calls on the active profiler."""

    @property
    def registry(self) -> Registry: ...

    @property
    def cycle_index(self) -> int: ...

    def record_event(self, kind: str, **detail: Any) -> None: ...

    def end_cycle(self, label: str | None = None) -> Any: ...


class _State:
    __slots__ = ("profiler",)

    def __init__(self) -> None:
        self.profiler: Recorder | None = None


STATE = _State()


def active() -> Recorder | None:
    """The recorder recording now, or ``None``."""
    return STATE.profiler
