"""How the profiled program's run ends, as ``python`` would end it: SIGTERM raised in its main thread, ``os._exit``
announced, its uncaught traceback printed without closuretrace's pass-through frames, its non-daemon threads
joined. Used by :mod:`closuretrace.runner` while a program runs under ``closuretrace profile``.

Signals and process-level exits, while the program runs (:meth:`MainRun.execute`):

* **SIGTERM** (where it would kill a plain ``python``, i.e. its disposition is the default): the program gets
  :class:`Terminated`, a ``BaseException`` raised in its main thread like ``KeyboardInterrupt`` is for
  Ctrl-C, so its ``finally`` blocks run and the profiler still writes the report. The outcome is
  ``"terminated"``, exit status :data:`~closuretrace.outcome.EXIT_TERMINATED`
  (143 = 128 + SIGTERM, what a shell reports for a
  process killed by SIGTERM). Only one is raised: a further SIGTERM, or one that arrives after the program
  ended, while the run is analysed, is ignored (and announced on stderr) so that the report is complete. The
  previous handler is restored when the run is left. Like Ctrl-C, SIGTERM reaches the program when it next
  runs Python code: one blocked in a long C call stops when the call returns (SIGKILL ends it at once, with no
  report).
* **A forked child** (``os.fork()``) that runs off the end of the program exits with the program's status, like
  python, without a report or a summary: the report is the parent's.
* **os._exit(n)** ends the process at once, as it does under python (no ``finally``, no report); a warning line
  on stderr says so, since no report will follow.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable
from typing import Any

from closuretrace._paths import is_tool_file
from closuretrace.outcome import TERMINATED, Outcome

__all__ = ["ProcessGuard", "Terminated", "flush", "join_threads", "print_exception", "terminated", "warn"]


class Terminated(BaseException):
    """Raised in the program's main thread when the process gets SIGTERM during the run.

    A ``BaseException`` like ``KeyboardInterrupt``: ``except Exception`` in the program does not swallow it.
    """


class ProcessGuard:
    """SIGTERM and ``os._exit`` while the program runs (see the module docstring).

    :meth:`install` (main thread only) makes SIGTERM raise :class:`Terminated` in the program, where its
    disposition was the default, and wraps ``os._exit`` to say that no report will follow; :meth:`hold`, once
    the program ended, holds a SIGTERM until :meth:`restore` puts everything back.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._sigterm = False
        self._held = 0
        self._real_exit: Callable[[int], Any] | None = None

    def install(self, pid: int) -> None:
        if self._real_exit is None:
            real_exit = os._exit
            self._real_exit = real_exit

            def _exit(status: int) -> Any:
                if os.getpid() == pid:
                    warn(f"warning: the program called os._exit({status}): the process ends now, without a report")
                return real_exit(status)

            _exit.__wrapped__ = real_exit  # type: ignore[attr-defined]
            setattr(os, "_exit", _exit)  # noqa: B010
        if self._sigterm or threading.current_thread() is not threading.main_thread():
            return
        try:
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not signal.SIG_DFL:
                return  # ignored, or handled by the host: python would not die of it either
            signal.signal(signal.SIGTERM, self._raise)
        except (ValueError, OSError):
            return
        self._previous, self._sigterm = previous, True

    def _raise(self, signum: int, frame: object) -> None:
        self.hold()  # one Terminated only: a second SIGTERM must not interrupt the program's clean-up
        raise Terminated(signum)

    def _hold(self, signum: int, frame: object) -> None:
        self._held += 1

    def hold(self) -> None:
        """The program has ended: a SIGTERM now waits until the report is made (:meth:`restore`)."""
        if self._sigterm:
            try:
                signal.signal(signal.SIGTERM, self._hold)
            except (ValueError, OSError):
                pass

    def restore(self) -> None:
        if self._real_exit is not None:
            if getattr(os._exit, "__wrapped__", None) is self._real_exit:
                setattr(os, "_exit", self._real_exit)  # noqa: B010
            self._real_exit = None
        if self._sigterm:
            self._sigterm = False
            try:
                signal.signal(signal.SIGTERM, self._previous)
            except (ValueError, OSError):
                pass
            if self._held:
                self._held = 0
                warn("warning: SIGTERM ignored while the run was finishing, so that its report is complete")


def terminated() -> Outcome:
    """The outcome of a run stopped by SIGTERM (said on stderr: the report follows)."""
    warn("the program was stopped by SIGTERM; writing the report")
    return TERMINATED


def flush() -> None:
    """Flush the program's stdout and stderr, whatever state it left them in."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def warn(message: str) -> None:
    """One line on stderr, ``closuretrace: ...``, even if the program closed or replaced sys.stderr."""
    flush()
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.write(f"closuretrace: {message}\n")
                stream.flush()
                return
        except (OSError, ValueError, AttributeError):
            continue


def _is_tool(tb: types.TracebackType) -> bool:
    return is_tool_file(tb.tb_frame.f_code.co_filename)


def _strip_tool_frames(exc: BaseException, seen: set[int]) -> None:
    """Drop the tool's pass-through frames (runner, wrappers) from ``exc`` and the exceptions it chains.

    Frames of the tool *after* the last frame of the program are kept: the error happened in the tool.
    """
    if id(exc) in seen:
        return
    seen.add(id(exc))
    entries: list[types.TracebackType] = []
    tb = exc.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    users = [i for i, t in enumerate(entries) if not _is_tool(t)]
    if users:
        last_user = users[-1]
        kept = [t for i, t in enumerate(entries) if i > last_user or not _is_tool(t)]
        if len(kept) != len(entries):
            for a, b in zip(kept, kept[1:]):
                a.tb_next = b
            exc.__traceback__ = kept[0]
    for other in (exc.__cause__, exc.__context__):
        if other is not None:
            _strip_tool_frames(other, seen)
    for sub in getattr(exc, "exceptions", ()) or ():
        if isinstance(sub, BaseException):
            _strip_tool_frames(sub, seen)


def print_exception(exc: BaseException) -> None:
    """Print ``exc`` as the interpreter prints an uncaught exception: through ``sys.excepthook``."""
    _strip_tool_frames(exc, set())
    sys.stdout.flush()
    try:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    except BaseException as hook_exc:
        print("Error in sys.excepthook:", file=sys.stderr)
        traceback.print_exception(type(hook_exc), hook_exc, hook_exc.__traceback__)
        print("\nOriginal exception was:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.flush()


def join_threads() -> None:
    """Wait for the program's non-daemon threads, as the interpreter does before it exits."""
    me = threading.current_thread()
    while True:
        waiting = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
        if not waiting:
            return
        for t in waiting:
            t.join()
