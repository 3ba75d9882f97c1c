"""Run a script or a module as ``__main__``, the way ``python script.py`` and ``python -m module`` would.

The program sees what it would see under plain ``python``:

=====================  ==========================================  ==========================================
                       ``script.py a b``                           ``-m pkg.mod a b``
=====================  ==========================================  ==========================================
``sys.argv``           ``["script.py", "a", "b"]`` (as given)      ``["/abs/pkg/mod.py", "a", "b"]``
``sys.path[0]``        real directory of the script                the current directory
``__name__``           ``"__main__"``                              ``"__main__"``
``__file__``           absolute path (cwd joined, not normalised)  ``__spec__.origin``
``__spec__``           ``None``                                    spec of ``pkg.mod``
``__loader__``         ``SourceFileLoader("__main__", file)``      ``__spec__.loader``
``__package__``        ``None``                                    ``"pkg"``
``__cached__``         ``None``                                    ``__spec__.cached``
=====================  ==========================================  ==========================================

Signals and process-level exits, while the program runs (:meth:`MainRun.execute`):

* **SIGTERM** (where it would kill a plain ``python``, i.e. its disposition is the default): the program gets
  :class:`Terminated`, a ``BaseException`` raised in its main thread like ``KeyboardInterrupt`` is for
  Ctrl-C, so its ``finally`` blocks run and the profiler still writes the report. The outcome is
  ``"terminated"``, exit status :data:`EXIT_TERMINATED` (143 = 128 + SIGTERM, what a shell reports for a
  process killed by SIGTERM). Only one is raised: a further SIGTERM, or one that arrives after the program
  ended, while the run is analysed, is ignored (and announced on stderr) so that the report is complete. The
  previous handler is restored when the run is left. Like Ctrl-C, SIGTERM reaches the program when it next
  runs Python code: one blocked in a long C call stops when the call returns (SIGKILL ends it at once, with no
  report).
* **A forked child** (``os.fork()``) that runs off the end of the program exits with the program's status, like
  python, without a report or a summary: the report is the parent's.
* **os._exit(n)** ends the process at once, as it does under python (no ``finally``, no report); a warning line
  on stderr says so, since no report will follow.

The code runs in a *fresh* module object installed as ``sys.modules["__main__"]`` (so pickle, dataclasses
and ``import __main__`` find it), not in the tool's own ``__main__``. Under ``python -P`` (safe path)
``sys.path`` is left alone, as Python does.

Unlike :func:`runpy.run_path`, the namespace stays installed until the ``with`` block ends: the profiler
analyses the run (and searches retention chains through ``__main__.<global>``) *before* anything is torn
down::

    with MainRun.script("train.py", ["--epochs", "3"]) as run:
        profiler.start()
        outcome = run.execute()          # never raises: prints the user's traceback like python does
        profiler.finish(outcome.outcome, outcome.exit_code, outcome.error)
    # sys.argv, sys.path and sys.modules["__main__"] are back to what they were

:func:`run_script` and :func:`run_module` do the same with a callback in place of the block.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

from closuretrace.instrument.rewrite import Instrumentation
from closuretrace.outcome import (
    COMPLETED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    INTERRUPTED,
    TERMINATED,
    Outcome,
    error_text,
    exit_outcome,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "MainRun",
    "Outcome",
    "TargetError",
    "Terminated",
    "run_module",
    "run_script",
]

_TOOL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


class TargetError(Exception):
    """The program cannot be started (no such file or module, syntax error). The message is one line."""


class Terminated(BaseException):
    """Raised in the program's main thread when the process gets SIGTERM during the run.

    A ``BaseException`` like ``KeyboardInterrupt``: ``except Exception`` in the program does not swallow it.
    """


class MainRun:
    """One run of a script or module as ``__main__``; a context manager that installs and restores it.

    Construction checks the ``--track``/``--cycle-on`` names (:class:`ValueError`); entering reads and
    compiles the program or finds the module (:class:`TargetError`), then installs ``sys.argv``,
    ``sys.path[0]`` and the fresh ``__main__``; leaving restores all three.
    """

    def __init__(
        self,
        kind: str,
        target: str,
        args: Sequence[str],
        *,
        track: Sequence[str] = (),
        cycle_on: Sequence[str] = (),
    ) -> None:
        if kind not in ("script", "module"):
            raise ValueError(f"kind must be 'script' or 'module', not {kind!r}")
        self.kind = kind
        self.target = target
        self.args = list(args)
        self.instrumentation = Instrumentation(
            track=track, cycle_on=cycle_on, main_module=target if kind == "module" else None
        )
        #: the ``sys.argv`` the program gets (``argv[0]`` of a module is known once it is found)
        self.argv: list[str] = [target, *self.args]
        #: the fresh ``__main__`` module, while the run is entered
        self.main: types.ModuleType | None = None
        self._code: types.CodeType | None = None
        self._saved: tuple[list[str], list[str], list[str], types.ModuleType | None] | None = None
        self._guard = _ProcessGuard()

    @classmethod
    def script(cls, path: str, args: Sequence[str] = (), **kw: Any) -> MainRun:
        return cls("script", path, args, **kw)

    @classmethod
    def module(cls, name: str, args: Sequence[str] = (), **kw: Any) -> MainRun:
        return cls("module", name, args, **kw)

    @property
    def stem(self) -> str:
        """A short name for the program: the script's file stem, or the module name."""
        if self.kind == "module":
            return self.target
        return os.path.splitext(os.path.basename(self.target))[0] or "script"

    # -- setting up --------------------------------------------------------------------------------------
    def __enter__(self) -> MainRun:
        if self._saved is not None:
            raise RuntimeError("MainRun is already entered")
        if self.kind == "script":
            # Everything that can fail happens before sys is touched.
            namespace, code, path0 = self._prepare_script()
            self._install_sys(path0)
            self.instrumentation.install_hooks()
        else:
            # Like runpy: the parent packages are imported with sys.argv[0] == "-m" and the cwd on sys.path.
            self._install_sys(os.getcwd())
            self.argv[0] = "-m"
            self.instrumentation.install_hooks()
            try:
                namespace, code = self._prepare_module()
            except BaseException:
                self._restore()
                raise
            self.argv[0] = namespace["__file__"] or self.target
        self._code = code
        module = types.ModuleType("__main__")
        module.__dict__.update(namespace)
        self.main = module
        sys.modules["__main__"] = module
        return self

    def _install_sys(self, path0: str) -> None:
        old_main = sys.modules.get("__main__")
        self._saved = (sys.argv, sys.path, list(sys.path), old_main)
        sys.argv = self.argv
        if not getattr(sys.flags, "safe_path", False):
            if sys.path:
                sys.path[0] = path0
            else:
                sys.path.append(path0)

    def _base_namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {"__name__": "__main__", "__doc__": None, "__builtins__": builtins}
        # The interpreter gives __main__ an empty __annotations__ (for the REPL); mirror what it did here.
        if "__annotations__" in getattr(sys.modules.get("__main__"), "__dict__", {}):
            ns["__annotations__"] = {}
        return ns

    def _prepare_script(self) -> tuple[dict[str, Any], types.CodeType, str]:
        path = self.target
        # CPython makes the script path absolute by plain concatenation (in "/" that gives "//script.py").
        file = path if os.path.isabs(path) else os.getcwd() + os.sep + path
        try:
            with open(file, "rb") as fh:
                source = fh.read()
        except IsADirectoryError:
            raise TargetError(f"{path}: is a directory (running a directory or zip file is not supported)") from None
        except OSError as exc:
            raise TargetError(f"can't open file {file!r}: [Errno {exc.errno}] {exc.strerror}") from None
        if b"\0" in source:
            raise TargetError(f"{file}: not a Python script (it contains null bytes: a binary file?)")
        code = self._compile(source, file)
        ns = self._base_namespace()
        ns.update(
            __file__=file,
            __cached__=None,
            __loader__=importlib.machinery.SourceFileLoader("__main__", file),
            __package__=None,
            __spec__=None,
        )
        return ns, code, os.path.dirname(os.path.realpath(file))

    def _compile(self, source: str | bytes, filename: str) -> types.CodeType:
        try:
            return self.instrumentation.compile_main(source, filename)
        except SyntaxError as exc:
            if isinstance(source, bytes) and str(exc.msg).startswith("(unicode error)"):
                raise TargetError(
                    f"{filename}: not a Python script (not UTF-8 and no encoding declared: a binary file?)"
                ) from None
            where = f"{exc.filename or filename}:{exc.lineno}" if exc.lineno else (exc.filename or filename)
            raise TargetError(f"{where}: {type(exc).__name__}: {exc.msg}") from None
        except ValueError as exc:  # null bytes (3.11)
            raise TargetError(f"{filename}: SyntaxError: {exc}") from None

    def _prepare_module(self) -> tuple[dict[str, Any], types.CodeType]:
        name, spec = _find_module(self.target)
        loader = spec.loader
        assert loader is not None
        code: types.CodeType | None
        try:
            source = loader.get_source(name) if hasattr(loader, "get_source") else None
        except ImportError as exc:
            raise TargetError(f"cannot read the source of {name!r}: {exc}") from None
        origin = spec.origin or name
        if source is not None:
            code = self._compile(source, origin)
        else:
            if self.instrumentation.main_names:
                self.instrumentation.source_unavailable(f"{name} has no source code to instrument")
            try:
                code = loader.get_code(name) if hasattr(loader, "get_code") else None
            except ImportError as exc:
                raise TargetError(f"cannot load {name!r}: {exc}") from None
            if code is None:
                raise TargetError(f"no code object available for {name!r}")
        ns = self._base_namespace()
        ns.update(
            __file__=spec.origin,
            __cached__=spec.cached if spec.has_location else None,
            __loader__=loader,
            __package__=spec.parent,
            __spec__=spec,
        )
        return ns, code

    # -- running ------------------------------------------------------------------------------------------
    def execute(self) -> Outcome:
        """Run the program to its end and say how it ended.

        An exception's traceback is printed to stderr like python prints it (through ``sys.excepthook``,
        without the tool's own frames), and ``sys.exit("message")`` prints the message. Then, like the
        interpreter at exit, it waits for the program's non-daemon threads.

        It never raises, with one exception: in a child the program forked (``os.fork()``) that comes back
        here, it raises ``SystemExit(status)`` so that the child exits as it would under python, without
        profiling (the report is the parent's).
        """
        if self.main is None or self._code is None:
            raise RuntimeError("MainRun.execute() needs the run to be entered (use 'with')")
        code, globals_ = self._code, self.main.__dict__
        pid = os.getpid()
        self._guard.install(pid)
        try:
            try:
                outcome = self._run(code, globals_)
            finally:
                self._guard.hold()
        except Terminated:  # SIGTERM between the program's end and hold(): at most one is ever raised
            outcome = _terminated()
        if os.getpid() != pid:
            _flush()
            raise SystemExit(outcome.exit_code)
        return outcome

    def _run(self, code: types.CodeType, globals_: dict[str, Any]) -> Outcome:
        try:
            exec(code, globals_)
        except SystemExit as exc:
            outcome = exit_outcome(exc.code)
            if outcome.exit_code and not isinstance(exc.code, int):
                _flush()
                print(exc.code, file=sys.stderr)  # what the interpreter prints for sys.exit("message")
        except KeyboardInterrupt as exc:
            _print_exception(exc)
            outcome = INTERRUPTED
        except Terminated:
            outcome = _terminated()
        except BaseException as exc:
            _print_exception(exc)
            outcome = Outcome("exception", 1, error_text(exc))
        else:
            outcome = COMPLETED
        if outcome.outcome == "terminated":
            return outcome  # python would not wait for the threads either: SIGTERM ends the process
        try:
            _join_threads()
        except KeyboardInterrupt:
            if outcome.outcome == "completed":
                outcome = INTERRUPTED
        except Terminated:
            outcome = _terminated()
        return outcome

    def warnings(self) -> list[str]:
        """Lines about ``--track``/``--cycle-on`` names that matched nothing."""
        return self.instrumentation.unmatched()

    # -- tearing down ---------------------------------------------------------------------------------------
    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        self._guard.restore()
        self.instrumentation.remove_hooks()
        if self._saved is None:
            return
        argv, path_obj, path_items, old_main = self._saved
        self._saved = None
        sys.argv = argv
        path_obj[:] = path_items
        sys.path = path_obj
        if old_main is not None:
            sys.modules["__main__"] = old_main
        elif sys.modules.get("__main__") is self.main:
            del sys.modules["__main__"]
        self._code = None
        self.main = None


def run_script(
    path: str,
    args: Sequence[str] = (),
    *,
    track: Sequence[str] = (),
    cycle_on: Sequence[str] = (),
    after: Callable[[Outcome], object] | None = None,
) -> Outcome:
    """Run ``path`` like ``python path *args``; ``after(outcome)`` runs while its namespace is still installed."""
    with MainRun.script(path, args, track=track, cycle_on=cycle_on) as run:
        outcome = run.execute()
        if after is not None:
            after(outcome)
    return outcome


def run_module(
    name: str,
    args: Sequence[str] = (),
    *,
    track: Sequence[str] = (),
    cycle_on: Sequence[str] = (),
    after: Callable[[Outcome], object] | None = None,
) -> Outcome:
    """Run ``name`` like ``python -m name *args``; ``after(outcome)`` runs while its namespace is installed."""
    with MainRun.module(name, args, track=track, cycle_on=cycle_on) as run:
        outcome = run.execute()
        if after is not None:
            after(outcome)
    return outcome


# -- helpers ------------------------------------------------------------------------------------------------

def _find_module(name: str) -> tuple[str, importlib.machinery.ModuleSpec]:
    """Find the module ``python -m name`` would run (``pkg.__main__`` for a package), like runpy does."""
    if name.startswith("."):
        raise TargetError(f"relative module names are not supported: {name!r}")
    parent = name.rpartition(".")[0]
    if parent:
        try:
            __import__(parent)
        except ImportError as exc:
            missing = exc.name
            if missing is not None and (missing == parent or parent.startswith(missing + ".")):
                raise TargetError(f"no module named {missing!r}") from None
            raise TargetError(f"error while importing {parent!r}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise TargetError(f"error while importing {parent!r}: {type(exc).__name__}: {exc}") from None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise TargetError(
            f"error while finding module specification for {name!r} ({type(exc).__name__}: {exc})"
        ) from None
    if spec is None:
        raise TargetError(f"no module named {name!r}")
    if spec.submodule_search_locations is not None:
        if name == "__main__" or name.endswith(".__main__"):
            raise TargetError("cannot use package as __main__ module")
        try:
            return _find_module(name + ".__main__")
        except TargetError as exc:
            raise TargetError(f"{exc}; {name!r} is a package and cannot be directly executed") from None
    if spec.loader is None:
        raise TargetError(f"{name!r} is a namespace package and cannot be executed")
    return name, spec


class _ProcessGuard:
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
                    _warn(f"warning: the program called os._exit({status}): the process ends now, without a report")
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
                _warn("warning: SIGTERM ignored while the run was finishing, so that its report is complete")


def _terminated() -> Outcome:
    _warn("the program was stopped by SIGTERM; writing the report")
    return TERMINATED


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _warn(message: str) -> None:
    """One line on stderr, ``closuretrace: ...``, even if the program closed or replaced sys.stderr."""
    _flush()
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.write(f"closuretrace: {message}\n")
                stream.flush()
                return
        except (OSError, ValueError, AttributeError):
            continue


def _is_tool(tb: types.TracebackType) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_TOOL_DIR)


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


def _print_exception(exc: BaseException) -> None:
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


def _join_threads() -> None:
    """Wait for the program's non-daemon threads, as the interpreter does before it exits."""
    me = threading.current_thread()
    while True:
        waiting = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
        if not waiting:
            return
        for t in waiting:
            t.join()
