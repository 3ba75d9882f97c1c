"""closuretrace in Jupyter, JupyterLab, VS Code and Colab: ``%load_ext closuretrace``.

Three ways in, all showing the same report as the HTML file, inline:

* ``%%closuretrace [options]`` profiles one cell. Each Keras ``fit()`` ends a cycle; ``--cycle-on NAME`` makes
  each return of a function of the notebook (or ``module:qualname``) end one; ``--track NAME`` records the
  closures a factory returns. The session is left in ``_closuretrace`` (or ``--name VAR``); ``-o PATH`` also
  writes the report (``.json``, ``.md``, ``.html``). The hooks are removed when the cell ends, also when it
  raises, and the report of what ran is shown.
* ``%%closuretrace_cycle`` marks a cell you re-run by hand: each run of it is one cycle of a session that lives
  across cells; ``%closuretrace report`` shows that session so far and ``%closuretrace stop`` ends it.
* A :class:`~closuretrace.session.Session` displays itself as the report (``prof.session`` as the last line).

The report is shown in an ``<iframe srcdoc>`` with an empty ``sandbox``: its styles cannot leak into the
notebook, and no script runs in it, whatever the profiled program put into a captured value's repr.
"""

from __future__ import annotations

import argparse
import html
import importlib
import shlex
from pathlib import Path
from typing import Any

from closuretrace.analysis import analyse
from closuretrace.instrument.track import end_cycle_after, track
from closuretrace.outcome import COMPLETED, Outcome, outcome_of
from closuretrace.profiler import ProfileOptions, Profiler
from closuretrace.session import Session
from closuretrace.units import parse_threshold

#: The variable a ``%%closuretrace`` cell leaves its session in, unless ``--name`` says otherwise.
DEFAULT_NAME = "_closuretrace"
#: Height of the inline report; it scrolls inside.
FRAME_HEIGHT = "720px"


class MagicUsageError(ValueError):
    """A bad magic line; its message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit the kernel
        raise MagicUsageError(f"closuretrace: {message}")


def _parser(prog: str) -> _Parser:
    p = _Parser(prog=prog, add_help=False)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threshold", action="append", default=[], metavar="METRIC=VALUE")
    p.add_argument("--cycle-on", action="append", default=[], metavar="NAME")
    p.add_argument("--track", action="append", default=[], metavar="NAME")
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--census-all", action="store_true")
    p.add_argument("--tracemalloc", action="store_true")
    return p


def parse_line(line: str, prog: str = "%%closuretrace") -> argparse.Namespace:
    """The options of a magic line; :class:`MagicUsageError` (one line) if they are wrong."""
    try:
        args = _parser(prog).parse_args(shlex.split(line))
    except MagicUsageError:
        raise
    except ValueError as exc:  # shlex: no closing quotation
        raise MagicUsageError(f"closuretrace: {exc}") from None
    if args.warmup < 0:
        raise MagicUsageError("closuretrace: --warmup must be 0 or more")
    if not str(args.name).isidentifier():
        raise MagicUsageError(f"closuretrace: --name {args.name!r} is not a Python name")
    try:
        args.thresholds = dict(parse_threshold(t) for t in args.threshold)
    except ValueError as exc:
        raise MagicUsageError(f"closuretrace: --threshold {exc}") from None
    return args


def options_from(args: argparse.Namespace, keras: bool = True) -> ProfileOptions:
    return ProfileOptions(
        warmup=args.warmup,
        thresholds=args.thresholds,
        include_libraries=args.census_all,
        tracemalloc=args.tracemalloc,
        keras=keras and not args.no_keras,
    )


class _Wrapped:
    """Functions of the notebook (or of a module) replaced for one cell, and put back after it."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def replace(self, ns: dict[str, Any], name: str, wrap: Any, option: str) -> None:
        owner, attr = self._locate(ns, name, option)
        is_ns = isinstance(owner, dict)
        original = owner[attr] if is_ns else getattr(owner, attr)
        if not callable(original):
            raise MagicUsageError(f"closuretrace: {option} {name}: not a function")
        new = wrap(original)
        if is_ns:
            owner[attr] = new
        else:
            setattr(owner, attr, new)
        self._undo.append((owner, attr, original, is_ns))

    @staticmethod
    def _locate(ns: dict[str, Any], name: str, option: str) -> tuple[Any, str]:
        if ":" in name:
            mod_name, _, qual = name.partition(":")
            try:
                owner: Any = importlib.import_module(mod_name)
            except ImportError:
                raise MagicUsageError(f"closuretrace: {option} {name}: no module {mod_name!r}") from None
            parts = qual.split(".")
        else:
            parts = name.split(".")
            if parts[0] not in ns:
                raise MagicUsageError(f"closuretrace: {option} {name}: no such name in the notebook")
            if len(parts) == 1:
                return ns, name
            owner = ns[parts[0]]
            parts = parts[1:]
        for part in parts[:-1]:
            owner = getattr(owner, part, None)
            if owner is None:
                raise MagicUsageError(f"closuretrace: {option} {name}: no attribute {part!r}")
        if not hasattr(owner, parts[-1]):
            raise MagicUsageError(f"closuretrace: {option} {name}: no attribute {parts[-1]!r}")
        return owner, parts[-1]

    def restore(self) -> None:
        for owner, attr, original, is_ns in reversed(self._undo):
            try:
                if is_ns:
                    owner[attr] = original
                else:
                    setattr(owner, attr, original)
            except Exception:
                continue
        self._undo.clear()


def report_html(session: Session) -> str:
    """The HTML report, framed for a notebook output: isolated styles, no scripts."""
    from closuretrace.renderers import render

    doc = render(session, "html")
    return (
        f'<iframe title="closuretrace report" sandbox="" srcdoc="{html.escape(doc, quote=True)}" '
        f'style="width:100%;height:{FRAME_HEIGHT};border:1px solid #d0d7de;border-radius:6px"></iframe>'
    )


def _write(session: Session, output: str | None) -> str | None:
    if not output:
        return None
    from closuretrace.renderers import render
    from closuretrace.reports import ReportError, report_paths, warn, write_reports

    try:
        paths = report_paths(Path(output).expanduser(), "notebook")
        return str(write_reports(paths, lambda fmt: render(session, fmt), session.to_json)[0])
    except ReportError as exc:  # the report is shown inline all the same
        warn(str(exc))
        return None


def _cell_outcome(result: Any) -> Outcome:
    """How the cell ended, as a program's ending."""
    return outcome_of(getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None))


def _magics_class() -> Any:
    """The IPython ``Magics`` class, built on first use so that importing closuretrace never imports IPython."""
    from IPython.core.magic import Magics, cell_magic, line_cell_magic, magics_class

    ipy_display: Any = importlib.import_module("IPython.display")

    @magics_class
    class ClosuretraceMagics(Magics):
        """``%%closuretrace``, ``%%closuretrace_cycle`` and ``%closuretrace report|stop``."""

        def __init__(self, shell: Any) -> None:
            super().__init__(shell)
            self.sh: Any = shell
            self.live: Profiler | None = None
            self.live_name = DEFAULT_NAME
            self.runs = 0

        def _show(self, session: Session, name: str) -> None:
            self.sh.user_ns[name] = session
            ipy_display.display(ipy_display.HTML(report_html(session)))

        @line_cell_magic
        def closuretrace(self, line: str, cell: str | None = None) -> None:
            try:
                if cell is None:
                    self._line(line.strip())
                else:
                    self._profile_cell(line, cell)
            except MagicUsageError as exc:
                print(exc)

        def _line(self, command: str) -> None:
            if command not in ("report", "stop"):
                raise MagicUsageError(
                    "closuretrace: use %closuretrace report or %closuretrace stop (and %%closuretrace on a cell)"
                )
            prof = self.live
            if prof is None:
                raise MagicUsageError("closuretrace: no session is recording; run a %%closuretrace_cycle cell")
            if command == "report":
                recording = prof.snapshot()
                try:
                    session = analyse(recording)
                finally:
                    if recording.live is not None:
                        recording.live.release()
            else:
                self.live = None
                session = prof.finish()
            self._show(session, self.live_name)

        def _profile_cell(self, line: str, cell: str) -> None:
            args = parse_line(line)
            if self.live is not None:
                raise MagicUsageError(
                    "closuretrace: a %%closuretrace_cycle session is recording; %closuretrace stop ends it"
                )
            wrapped = _Wrapped()
            prof = Profiler(options_from(args), argv=["%%closuretrace", *shlex.split(line)])
            ns = self.sh.user_ns
            try:
                for name in args.track:
                    wrapped.replace(ns, name, track, "--track")
                for name in args.cycle_on:
                    wrapped.replace(ns, name, end_cycle_after, "--cycle-on")
            except MagicUsageError:
                wrapped.restore()
                raise
            prof.start()
            outcome: Outcome = COMPLETED
            try:
                result = self.sh.run_cell(cell, store_history=False)
                outcome = _cell_outcome(result)
            except BaseException as exc:  # the kernel interrupted outside the cell's own code
                outcome = outcome_of(exc)
            finally:
                wrapped.restore()
                session = prof.finish(outcome)
            written = _write(session, args.output)
            self._show(session, args.name)
            if written:
                print(f"closuretrace: report written to {written}")

        @cell_magic
        def closuretrace_cycle(self, line: str, cell: str) -> None:
            try:
                if self.live is None:
                    args = parse_line(line, "%%closuretrace_cycle")
                    # The cell is the cycle: Keras fit() must not end cycles of its own here.
                    self.live = Profiler(options_from(args, keras=False), argv=["%%closuretrace_cycle"])
                    self.live.start()
                    self.live_name, self.runs = args.name, 0
            except MagicUsageError as exc:
                print(exc)
                return
            self.runs += 1
            try:
                self.sh.run_cell(cell, store_history=False)
            finally:
                self.live.end_cycle(f"run {self.runs}")

    return ClosuretraceMagics


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext closuretrace``: register the magics and show sessions as their report."""
    ip.register_magics(_magics_class())
    formatters = ip.display_formatter.formatters
    formatters["text/html"].for_type(Session, report_html)

    def as_markdown(session: Session) -> str:
        from closuretrace.renderers import render

        return render(session, "markdown")

    formatters["text/markdown"].for_type(Session, as_markdown)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext closuretrace``: stop a session still recording."""
    for magics in list(ip.magics_manager.registry.values()):
        prof = getattr(magics, "live", None)
        if isinstance(prof, Profiler):
            prof.finish()
            magics.live = None
