"""How a profiled program ended: one mapping from its ending to an outcome, an exit status and an error text.

``closuretrace profile``, the experiment's worker, the pytest plugin and ``Profiler.__exit__`` all turn an
ending into an :class:`Outcome` here, so the status and the error text are the same whichever way in was used.
"""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass

from closuretrace.session.model import OutcomeKind

#: Exit status for a run ended by KeyboardInterrupt (128 + SIGINT, what a shell reports for python).
EXIT_INTERRUPTED = 128 + int(signal.SIGINT)
#: Exit status for a run ended by SIGTERM (128 + SIGTERM, what a shell reports for a process it killed).
EXIT_TERMINATED = 128 + int(signal.SIGTERM)


@dataclass(frozen=True)
class Outcome:
    """How the program ended, in the terms of :meth:`closuretrace.Profiler.finish`."""

    outcome: OutcomeKind
    exit_code: int
    error: str | None = None


COMPLETED = Outcome("completed", 0, None)
INTERRUPTED = Outcome("interrupted", EXIT_INTERRUPTED, "KeyboardInterrupt")
TERMINATED = Outcome("terminated", EXIT_TERMINATED, "terminated by SIGTERM")


def exit_status(code: object) -> int:
    """The status the interpreter exits with for ``SystemExit(code)`` (a message exits 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    return 1


def error_text(exc: BaseException) -> str:
    """The last line python prints for ``exc`` (``ValueError: bad``, ``pkg.Error: why``)."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def exit_outcome(code: object) -> Outcome:
    """The outcome of ``SystemExit(code)``."""
    status = exit_status(code)
    if isinstance(code, int) or code is None:
        return Outcome("exit", status, None if status == 0 else str(status))
    return Outcome("exit", status, str(code))


def outcome_of(exc: BaseException | None) -> Outcome:
    """The outcome of a run that ended with ``exc`` (``None``: it completed).

    Any ``BaseException`` whose class is named ``Terminated`` (the runner's SIGTERM exception) counts as
    terminated, so this module need not import the runner.
    """
    if exc is None:
        return COMPLETED
    if isinstance(exc, SystemExit):
        return exit_outcome(exc.code)
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if type(exc).__name__ == "Terminated" and not isinstance(exc, Exception):
        return TERMINATED
    return Outcome("exception", 1, error_text(exc))
