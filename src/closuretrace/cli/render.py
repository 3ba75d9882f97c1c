"""``closuretrace render SESSION.json [-o OUT]``: a saved session as Markdown, HTML or JSON.

The format is OUT's extension (``.md``, ``.html``, ``.json``); without ``-o`` (or with ``-o -``) Markdown goes to
stdout. OUT is written through a temporary file and a rename, so a failure leaves no half-written report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from closuretrace.cli.errors import CLIError
from closuretrace.renderers import UnknownFormatError, format_for_path
from closuretrace.session import CompareSession, Session, SessionError, write_atomic

NAME = "render"
HELP = "render a saved session as Markdown, HTML or JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session", metavar="SESSION.json", help="a report saved by 'closuretrace profile' or 'closuretrace compare'"
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT", default="-",
        help="where to write: the extension picks the format (.md, .html, .json); '-' (default) prints Markdown",
    )


def output_format(out: str | None) -> str:
    """The format for ``-o OUT``: ``markdown`` for stdout, else from the extension (CLIError if unknown)."""
    if out in (None, "", "-"):
        return "markdown"
    try:
        return format_for_path(out)
    except UnknownFormatError as exc:
        raise CLIError(str(exc)) from None


def load(path: str) -> Session | CompareSession:
    """The session in ``path``, judged (a file from an older closuretrace gets its verdict states and status)."""
    from closuretrace.reading import read_session

    try:
        return read_session(path)
    except SessionError as exc:
        raise CLIError(str(exc)) from None


def load_profile(path: str) -> Session:
    """A ``profile`` session (CLIError for anything else, a ``compare`` report included)."""
    session = load(path)
    if isinstance(session, CompareSession):
        raise CLIError(f"{path}: a 'closuretrace compare' report; diff compares two 'closuretrace profile' sessions")
    return session


def emit(text: str, out: str | None) -> None:
    """Print ``text`` (``out`` is ``-``/None) or write it to ``out`` atomically (CLIError if it cannot be)."""
    if out in (None, "", "-"):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `closuretrace render s.json | head`: the reader left, which is fine
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    assert out is not None
    try:
        write_atomic(out, text)
    except OSError as exc:
        raise CLIError(f"{out}: cannot write ({exc.strerror or exc})") from None
    sys.stderr.write(f"closuretrace: wrote {out}\n")


def execute(args: argparse.Namespace) -> int:
    """``render``, raising :class:`CLIError` for anything the user can fix."""
    from closuretrace.renderers import render

    out: str | None = getattr(args, "output", None)
    fmt = output_format(out)
    session = load(args.session)
    emit(render(session, fmt), out)
    return 0



class RenderCommand:
    """Render a report saved by 'closuretrace profile' or 'closuretrace compare' (its JSON file) again.

    The format is OUT's extension: .md (GitHub Markdown, fit for a CI step summary), .html (one self-contained
    page with charts) or .json. Without -o, Markdown is printed.
    """

    name = NAME
    help = HELP

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        return execute(args)
