"""``closuretrace diff A.json B.json [-o OUT]``: did the fix work? Two saved sessions compared.

A is the run before the change, B the run after it. The report leads with the key metric's slope in A and B
and their ratio (``rss_bytes: +4.6 MiB/cycle -> +0.1 MiB/cycle (x0.02)``). The format is OUT's extension
(``.md``, ``.html``, ``.json``); without ``-o`` (or with ``-o -``) Markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import os

from closuretrace.cli.render import emit, load_profile, output_format

NAME = "diff"
HELP = "compare two saved sessions (before and after a fix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A.json", help="the session before the change")
    parser.add_argument("b", metavar="B.json", help="the session after the change")
    parser.add_argument(
        "-o", "--output", metavar="OUT", default="-",
        help="where to write: the extension picks the format (.md, .html, .json); '-' (default) prints Markdown",
    )


def execute(args: argparse.Namespace) -> int:
    """``diff``, raising :class:`CLIError` for anything the user can fix."""
    from closuretrace.analysis.diff import diff_sessions
    from closuretrace.renderers import render_diff

    out: str | None = getattr(args, "output", None)
    fmt = output_format(out)
    a, b = load_profile(args.a), load_profile(args.b)
    name_a, name_b = os.path.basename(args.a), os.path.basename(args.b)
    if name_a == name_b:  # runs/1/s.json vs runs/2/s.json: the base names would not tell them apart
        name_a, name_b = str(args.a), str(args.b)
    diff = diff_sessions(a, b, name_a=name_a, name_b=name_b)
    emit(render_diff(diff, fmt), out)
    return 0



class DiffCommand:
    """Compare two sessions saved by 'closuretrace profile': A before a change, B after it.

    Shows each metric's growth per cycle in A and B with the ratio B/A, the closures each factory left alive,
    and the types that stopped or started growing. The format is OUT's extension (.md, .html, .json); without
    -o, Markdown is printed.
    """

    name = NAME
    help = HELP

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        return execute(args)
