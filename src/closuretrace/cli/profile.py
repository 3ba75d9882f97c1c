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
import datetime as _dt
import importlib
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closuretrace.cli.errors import EXIT_USAGE, CLIError, warning_line
from closuretrace.renderers import UnknownFormatError, format_for_path

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


# -- the report path ------------------------------------------------------------------------------------------

def default_output(stem: str, cwd: str | None = None, now: _dt.datetime | None = None) -> Path:
    """``<cwd>/reports/<stem>-<YYYYmmddTHHMMSSZ>-<pid>.json``: the pid keeps concurrent runs apart."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip(".") or "run"
    stamp = now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(cwd or os.getcwd()) / "reports" / f"{safe}-{stamp}-{os.getpid()}.json"


def check_output(path: Path) -> None:
    """Fail now, before the program runs, if the report cannot be written to ``path``."""
    if path.is_dir():
        raise CLIError(f"cannot write report to {path}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"cannot write report to {path}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".closuretrace-", suffix=".probe", dir=parent)
    except OSError as exc:
        raise CLIError(f"cannot write report to {path}: {parent} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def write_report(path: Path, text: str) -> Path:
    """Write the report atomically; if that fails now, write it to the temp directory and say so."""
    from closuretrace.session import write_atomic

    try:
        return write_atomic(path, text)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / path.name
        try:
            written = write_atomic(fallback, text)
        except OSError as exc2:
            raise CLIError(
                f"cannot write report to {path} ({exc.strerror}) nor to {fallback} ({exc2.strerror})"
            ) from None
        _err(warning_line(f"cannot write report to {path} ({exc.strerror}); writing it to {written} instead"))
        return written


# -- output ---------------------------------------------------------------------------------------------------

def _err(text: str) -> None:
    """Write a line to stderr, even if the program closed or replaced it badly."""
    line = text if text.endswith("\n") else text + "\n"
    for stream in (sys.stderr, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.write(line)
            stream.flush()
            return
        except (OSError, ValueError, AttributeError):
            continue


def _render_for(session: Session, path: Path) -> str:
    """The report for ``path``'s extension; JSON falls back to the session's own, so it is never lost."""
    from closuretrace.renderers import render_for_path

    try:
        return render_for_path(session, path)
    except Exception as exc:  # the report must be written
        if path.suffix.lower() != ".json":
            raise
        _err(warning_line(f"JSON renderer failed ({type(exc).__name__}: {exc}); writing the raw session"))
        return session.to_json()


def _render_text(session: Session) -> str | None:
    try:
        rendered: str = importlib.import_module("closuretrace.renderers.text").render(session)
        return rendered
    except Exception as exc:
        _err(warning_line(f"could not render the summary ({type(exc).__name__}: {exc})"))
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
        parser.add_argument(
            "--probe-in-process", action="store_true",
            help="collect and count the heap in this process at each cycle end, not in a forked snapshot child",
        )
        parser.add_argument(
            "--census-all", action="store_true",
            help="also list closures whose code is in the stdlib or site-packages",
        )
        parser.add_argument(
            "--fail-on-leak", action="store_true",
            help=f"exit with status {EXIT_LEAK} when a metric leaks and the program itself exited 0",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
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

        if args.output:
            output = Path(os.path.abspath(args.output))
            try:
                format_for_path(output)
            except UnknownFormatError as exc:
                raise CLIError(str(exc)) from None
        else:
            output = default_output(main_run.stem)
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(f"cannot create report directory {output.parent}: {exc.strerror}") from None
            n = 1
            while output.exists():  # same name only within one process and one second
                output = output.with_name(f"{output.stem.rsplit('~', 1)[0]}~{n}.json")
                n += 1
        check_output(output)

        try:
            main_run.__enter__()
        except TargetError as exc:
            raise CLIError(str(exc)) from None
        try:
            profiler = Profiler(options, argv=list(main_run.argv))
            profiler.start()
            outcome = main_run.execute()
            try:
                # The program's namespace is still installed: chains can be found through __main__.<name>.
                session = profiler.finish(outcome.outcome, outcome.exit_code, outcome.error)
            except Exception:
                traceback.print_exc()
                raise CLIError(
                    "internal error while analysing the run, no report written (a closuretrace bug)"
                ) from None
        finally:
            main_run.__exit__(None, None, None)

        # -o picks one format by its extension; by default JSON, Markdown and HTML are written side by side.
        outputs = [output] if args.output else [output.with_suffix(ext) for ext in (".json", ".md", ".html")]
        written = [write_report(outputs[0], _render_for(session, outputs[0]))]
        for extra in outputs[1:]:
            try:
                written.append(write_report(extra, _render_for(session, extra)))
            except Exception as exc:  # the JSON is safe; a failing renderer must not turn the run into an error
                _err(warning_line(f"could not write {extra.name} ({type(exc).__name__}: {exc})"))
        try:
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            pass
        if not args.quiet:
            summary = _render_text(session)
            if summary:
                _err(summary)
        for line in main_run.warnings():
            _err(warning_line(line))
        _err(f"closuretrace: report written to {', '.join(str(w) for w in written)}")
        if outcome.outcome == "terminated":
            # SIGTERM means stop now: threads the program left running must not keep the process alive, and
            # the report is already on disk.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()
            os._exit(outcome.exit_code)

        if args.fail_on_leak and outcome.exit_code == 0 and session.leaks():
            return EXIT_LEAK
        return outcome.exit_code


__all__ = ["EXIT_LEAK", "EXIT_USAGE", "ProfileCommand", "parse_size", "parse_threshold"]
