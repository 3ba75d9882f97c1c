"""``closuretrace profile``: run a program under the profiler, write the JSON report, print a summary.

Where things go:

* the program's own stdout and stderr are untouched;
* the terminal summary goes to **stderr**, so ``closuretrace profile train.py > out.txt`` keeps the program's
  stdout clean (``-q`` drops the summary);
* the report is JSON, written to ``-o PATH`` or ``reports/<name>-<UTC time>-<pid>.json`` under the directory
  ``closuretrace`` was started in; the last line on stderr says where.

Exit status: the program's own (0 when it completes, 1 when it raises, ``n`` for ``sys.exit(n)``, 130 for
KeyboardInterrupt), :data:`EXIT_LEAK` with ``--fail-on-leak`` when a metric leaks and the program exited 0,
and :data:`~closuretrace.cli.errors.EXIT_USAGE` (2) when closuretrace itself cannot run the program or write
the report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

from closuretrace.cli.errors import EXIT_USAGE, CLIError
from closuretrace.progress import live_progress, wanted
from closuretrace.renderers import render
from closuretrace.renderers.text import leak_line
from closuretrace.reports import err, publish, report_paths, warn

# parse_size/parse_threshold live in closuretrace.units (the pytest marker reads sizes too); re-exported here.
from closuretrace.units import parse_size, parse_threshold

if TYPE_CHECKING:
    from closuretrace.session import Session

#: Exit status with ``--fail-on-leak`` when any verdict says ``leak`` and the program itself exited 0.
EXIT_LEAK = 10

def _threshold_arg(text: str) -> tuple[str, float]:
    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _warmup_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return n


def _name_arg(option: str) -> Any:
    def check(text: str) -> str:
        from closuretrace.instrument.rewrite import parse_name

        try:
            parse_name(option, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


# -- output ---------------------------------------------------------------------------------------------------

def _render_text(session: Session) -> str | None:
    try:
        rendered: str = importlib.import_module("closuretrace.renderers.text").render(session)
        return rendered
    except Exception as exc:
        warn(f"could not render the summary ({type(exc).__name__}: {exc})")
        return None


class ProfileCommand:
    """Run a Python program under the profiler and write a JSON report.

    The program runs as it would under plain python (same sys.argv, __name__ == "__main__", sys.path[0] and
    working directory). Options go before the script; everything after the script path (or after the module
    name of -m) is passed to the program untouched. Each return of a --cycle-on function ends a cycle (with
    Keras, each fit() ends one too); without cycles the whole run is one.

    The summary is printed on stderr. Exit status: the program's own; 10 with --fail-on-leak when a metric
    leaks and the program exited 0; 2 when closuretrace cannot run the program or write the report.
    """

    name = "profile"
    help = "run a script or module under the profiler and write a report"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = (
            "closuretrace profile [options] script.py [args ...]\n"
            "       closuretrace profile [options] -m module [args ...]"
        )
        parser.add_argument(
            "-m", dest="as_module", action="store_true",
            help="run a library module as a script, like python -m (the next argument is the module name)",
        )
        parser.add_argument(
            "-o", "--output", metavar="PATH",
            help="report file (default: reports/<name>-<UTC time>-<pid>.json under the current directory)",
        )
        parser.add_argument(
            "--warmup", type=_warmup_arg, default=1, metavar="N",
            help="cycles left out of the verdicts at the start (default: 1)",
        )
        parser.add_argument(
            "--threshold", type=_threshold_arg, action="append", default=[], metavar="METRIC=VALUE",
            help="noise floor per cycle for a metric, e.g. rss_bytes=1MiB, gc_objects=200 (repeatable)",
        )
        parser.add_argument(
            "--cycle-on", type=_name_arg("--cycle-on"), action="append", default=[], metavar="NAME",
            help="end a cycle each time function NAME returns: a function of the script (step, Trainer.run) "
            "or module:qualname (repeatable)",
        )
        parser.add_argument(
            "--track", type=_name_arg("--track"), action="append", default=[], metavar="NAME",
            help="record every closure returned by factory NAME, named like --cycle-on (repeatable)",
        )
        parser.add_argument("--tracemalloc", action="store_true", help="also measure with tracemalloc (slower)")
        parser.add_argument("--no-keras", action="store_true", help="do not hook keras compile()/fit()")
        probes = parser.add_mutually_exclusive_group()
        probes.add_argument(
            "--probe-in-child", dest="probe_in_process", action="store_const", const=False, default=True,
            help="collect and count the heap in a forked snapshot child at each cycle end (POSIX; experimental: "
            "off the critical path, but the holder analysis falls back to plain chains)",
        )
        probes.add_argument(
            "--probe-in-process", dest="probe_in_process", action="store_const", const=True,
            help="collect and count the heap in this process at each cycle end (the default)",
        )
        parser.add_argument(
            "--census-all", action="store_true",
            help="also list closures whose code is in the stdlib or site-packages",
        )
        parser.add_argument(
            "--fail-on-leak", action="store_true",
            help=f"exit with status {EXIT_LEAK} when a metric leaks and the program itself exited 0",
        )
        importlib.import_module("closuretrace.verify").add_argument(parser)
        parser.add_argument(
            "--no-step-summary", action="store_true",
            help="do not append the Markdown report to $GITHUB_STEP_SUMMARY (GitHub Actions)",
        )
        parser.add_argument(
            "-q", "--quiet", action="store_true", help="do not print the summary nor the live status line"
        )
        parser.add_argument("target", nargs="?", metavar="script.py | module", help="the program to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="args", help="passed to the program")

    def run(self, args: argparse.Namespace) -> int:
        from closuretrace.profiler import ProfileOptions, Profiler
        from closuretrace.runner import MainRun, TargetError

        if not args.target:
            what = "module name after -m" if args.as_module else "script to run"
            raise CLIError(f"missing the {what}: closuretrace profile [options] script.py|-m module [args ...]")
        options = ProfileOptions(
            warmup=args.warmup,
            thresholds=dict(args.threshold),
            include_libraries=args.census_all,
            tracemalloc=args.tracemalloc,
            keras=not args.no_keras,
            probe_in_process=args.probe_in_process,
        )
        try:
            main_run = MainRun(
                "module" if args.as_module else "script",
                args.target,
                args.args,
                track=args.track,
                cycle_on=args.cycle_on,
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None

        # -o picks one format by its extension; by default JSON, Markdown and HTML are written side by side.
        outputs = report_paths(args.output, main_run.stem)  # a ReportError is one line (cli.main)

        try:
            main_run.__enter__()
        except TargetError as exc:
            raise CLIError(str(exc)) from None
        try:
            profiler = Profiler(options, argv=list(main_run.argv))
            importlib.import_module("closuretrace.verify").install_from_env(profiler)  # only in a --verify re-run
            profiler.start()
            with live_progress(profiler, wanted(args.quiet)):
                outcome = main_run.execute()
            try:
                # The program's namespace is still installed: chains can be found through __main__.<name>.
                session = profiler.finish(outcome)
            except Exception:
                traceback.print_exc()
                raise CLIError(
                    "internal error while analysing the run, no report written (a closuretrace bug)"
                ) from None
        finally:
            main_run.__exit__(None, None, None)

        importlib.import_module("closuretrace.verify").after_profile(args, session)  # --verify: one more run
        written = publish(outputs, lambda fmt: render(session, fmt), session.to_json, not args.no_step_summary)
        try:
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            pass
        if not args.quiet:
            summary = _render_text(session)
            if summary:
                err(summary)
        for line in main_run.warnings():
            warn(line)
        err(f"closuretrace: report written to {', '.join(str(w) for w in written)}")
        if outcome.outcome == "terminated":
            # SIGTERM means stop now: threads the program left running must not keep the process alive, and
            # the report is already on disk.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()
            os._exit(outcome.exit_code)

        if args.fail_on_leak and outcome.exit_code == 0 and session.leaks():
            err(f"closuretrace: --fail-on-leak: {leak_line(session)}")
            return EXIT_LEAK
        return outcome.exit_code


__all__ = ["EXIT_LEAK", "EXIT_USAGE", "ProfileCommand", "parse_size", "parse_threshold"]
