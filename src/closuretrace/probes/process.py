"""Process-level readings."""

from __future__ import annotations

import psutil

_PROC: psutil.Process | None = None


def rss_bytes() -> int:
    """Resident set size of this process, in bytes."""
    global _PROC
    if _PROC is None:
        _PROC = psutil.Process()
    return int(_PROC.memory_info().rss)
