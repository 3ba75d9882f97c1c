"""tracemalloc, only on request: it slows the program several-fold."""

from __future__ import annotations

import tracemalloc


def start() -> bool:
    """Start tracing unless already on; returns whether this call started it."""
    if tracemalloc.is_tracing():
        return False
    tracemalloc.start()
    return True


def current_bytes() -> int | None:
    if not tracemalloc.is_tracing():
        return None
    return tracemalloc.get_traced_memory()[0]


def stop(started: bool) -> None:
    if started and tracemalloc.is_tracing():
        tracemalloc.stop()
