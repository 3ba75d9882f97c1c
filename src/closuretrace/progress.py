"""A one-line live status per cycle while ``closuretrace profile`` runs a long program, on a terminal only.

Shown on stderr when it is a terminal, never in a pipe, a file or a CI log (``CI`` set), and never with
``--quiet``. It says what was just measured (cycle, RSS, gc objects and the change since the previous cycle),
not a verdict: verdicts need the whole run. The program's own stdout and stderr are left alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from closuretrace.session import CycleSample
from closuretrace.units import fmt_bytes, fmt_value

__all__ = ["live_progress", "status_line", "wanted"]


def wanted(quiet: bool, stream: Any = None) -> bool:
    """Whether to show the live status: a terminal, not quiet, not under CI."""
    stream = stream if stream is not None else sys.stderr
    if quiet or os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def status_line(sample: CycleSample, previous: CycleSample | None) -> str:
    """``cycle 5 (fit #5) · RSS 312.4 MiB (+4.6 MiB) · 84,213 gc objects (+1,200) · 6 closures alive``."""
    m, before = sample.metrics, previous.metrics if previous is not None else {}
    parts = [f"cycle {sample.index}" + (f" ({sample.label})" if sample.label != f"cycle {sample.index}" else "")]
    for key, unit, name in (("rss_bytes", "bytes", "RSS"), ("gc_objects", "objects", "gc objects")):
        if key not in m:
            continue
        now = m[key]
        text = f"{name} {fmt_bytes(now)}" if unit == "bytes" else f"{fmt_value(now, '')} {name}"
        if key in before:
            delta = now - before[key]
            text += f" ({fmt_bytes(delta, signed=True) if unit == 'bytes' else fmt_value(delta, '', True)})"
        parts.append(text)
    if "closures_alive" in m:
        parts.append(f"{fmt_value(m['closures_alive'], '')} closures alive")
    return " · ".join(parts)


@contextlib.contextmanager
def live_progress(profiler: Any, enabled: bool) -> Iterator[None]:
    """While the block runs, keep one status line on stderr, updated at every cycle end of ``profiler``."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(file=sys.__stderr__ or sys.stderr, highlight=False)
    last: list[CycleSample] = []
    live = Live(Text("closuretrace: waiting for the first cycle"), console=console, transient=True,
                redirect_stdout=False, redirect_stderr=False, auto_refresh=False)

    def update(sample: CycleSample) -> None:
        live.update(Text("closuretrace: " + status_line(sample, last[-1] if last else None)), refresh=True)
        last[:] = [sample]

    profiler.listeners.append(update)
    try:
        with live:
            yield
    finally:
        with contextlib.suppress(ValueError):
            profiler.listeners.remove(update)
