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

Signals and process-level exits while the program runs (SIGTERM, a forked child, ``os._exit``) are handled as
:mod:`closuretrace.ending` describes.

The code runs in a *fresh* module object installed as ``sys.modules["__main__"]`` (so pickle, dataclasses
and ``import __main__`` find it), not in the tool's own ``__main__``. Under ``python -P`` (safe path)
``sys.path`` is left alone, as Python does.

Unlike :func:`runpy.run_path`, the namespace stays installed until the ``with`` block ends: the profiler
analyses the run (and searches retention chains through ``__main__.<global>``) *before* anything is torn
down::

    with MainRun.script("train.py", ["--epochs", "3"]) as run:
        profiler.start()
        outcome = run.execute()          # never raises: prints the user's traceback like python does
        profiler.finish(outcome)
    # sys.argv, sys.path and sys.modules["__main__"] are back to what they were

:func:`run_script` and :func:`run_module` do the same with a callback in place of the block.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from closuretrace.ending import (
    ProcessGuard,
    Terminated,
    flush,
    join_threads,
    print_exception,
    terminated,
)
from closuretrace.instrument.rewrite import Instrumentation
from closuretrace.outcome import (
    COMPLETED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    INTERRUPTED,
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

class TargetError(Exception):
    """The program cannot be started (no such file or module, syntax error). The message is one line."""


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
        self._guard = ProcessGuard()

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
            outcome = terminated()
        if os.getpid() != pid:
            flush()
            raise SystemExit(outcome.exit_code)
        return outcome

    def _run(self, code: types.CodeType, globals_: dict[str, Any]) -> Outcome:
        try:
            exec(code, globals_)
        except SystemExit as exc:
            outcome = exit_outcome(exc.code)
            if outcome.exit_code and not isinstance(exc.code, int):
                flush()
                print(exc.code, file=sys.stderr)  # what the interpreter prints for sys.exit("message")
        except KeyboardInterrupt as exc:
            print_exception(exc)
            outcome = INTERRUPTED
        except Terminated:
            outcome = terminated()
        except BaseException as exc:
            print_exception(exc)
            outcome = Outcome("exception", 1, error_text(exc))
        else:
            outcome = COMPLETED
        if outcome.outcome == "terminated":
            return outcome  # python would not wait for the threads either: SIGTERM ends the process
        try:
            join_threads()
        except KeyboardInterrupt:
            if outcome.outcome == "completed":
                outcome = INTERRUPTED
        except Terminated:
            outcome = terminated()
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
