"""The one piece of global state: which profiler, if any, is recording now.

Decorated factories look here on every call, so an inactive tool costs one attribute read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from closuretrace.profiler import Profiler


class _State:
    __slots__ = ("profiler",)

    def __init__(self) -> None:
        self.profiler: Profiler | None = None


STATE = _State()


def active() -> Profiler | None:
    """The profiler recording now, or ``None``."""
    return STATE.profiler
