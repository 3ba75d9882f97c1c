"""Errors and exit statuses shared by the subcommands.

A subcommand raises :class:`CLIError` for anything the user can fix (bad option value, missing file,
unwritable output); :func:`closuretrace.cli.main.main` prints it as one line,
``closuretrace: error: <message>``, and exits with its status, without a traceback.
"""

from __future__ import annotations

#: Bad usage or a problem of closuretrace itself (bad option, missing script, syntax error, no such module,
#: unwritable report path, report not written).
EXIT_USAGE = 2


class CLIError(Exception):
    """A one-line error for the user; ``exit_code`` is the process exit status (default :data:`EXIT_USAGE`)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_line(message: str) -> str:
    """``closuretrace: error: <message>`` on one line (newlines in the message are folded)."""
    return "closuretrace: error: " + " ".join(str(message).split("\n"))


def warning_line(message: str) -> str:
    """``closuretrace: warning: <message>`` on one line."""
    return "closuretrace: warning: " + " ".join(str(message).split("\n"))
