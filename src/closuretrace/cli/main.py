"""``closuretrace <command> ...``: the argument parser and the dispatch to subcommands.

Each subcommand is a class in its own module with ``name``, ``help``, ``add_arguments(parser)`` and
``run(args) -> int`` (see :class:`Command`). Adding one is one line in :data:`COMMANDS`.

Errors the user can fix are one line on stderr, ``closuretrace: error: ...``, and exit status 2 (argparse's
own errors included: :class:`ArgumentParser` overrides ``error``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import NoReturn, Protocol

from closuretrace._version import __version__
from closuretrace.cli.errors import EXIT_USAGE, CLIError, error_line
from closuretrace.outcome import EXIT_INTERRUPTED

PROG = "closuretrace"

#: The subcommands, ``"module:Class"``, in the order ``closuretrace --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "closuretrace.cli.profile:ProfileCommand",
    "closuretrace.cli.render:RenderCommand",
    "closuretrace.cli.diff:DiffCommand",
    "closuretrace.cli.compare:CompareCommand",
)


class Command(Protocol):
    """What a subcommand class provides. Its docstring becomes the description in ``--help``."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line with a hint, ``closuretrace: error: ... (see ...)``."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(error_line(f"{message} (see '{self.prog} --help')") + "\n")
        raise SystemExit(EXIT_USAGE)


def _load(spec: str) -> Command:
    module_name, _, class_name = spec.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    command: Command = cls()
    return command


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Closure and memory diagnostics for Python and Keras programs.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=ArgumentParser)
    for spec in COMMANDS:
        command = _load(spec)
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=inspect.cleandoc(type(command).__doc__ or command.help),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        command.add_arguments(p)
        p.set_defaults(_command=command, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``closuretrace`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand's parser, whose --help is the useful one
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        sys.stderr.write(error_line(f"no command given (see '{PROG} --help')") + "\n")
        return EXIT_USAGE
    try:
        return command.run(args)
    except CLIError as exc:
        sys.stderr.write(error_line(str(exc)) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(error_line("interrupted") + "\n")
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``closuretrace`` console script."""
    sys.exit(main())
