"""``--track NAME`` and ``--cycle-on NAME``: wrap functions of a program without editing its code.

Two forms of ``NAME``:

``qualname`` (no colon)
    A function defined in the profiled script (or in the module run with ``-m``): ``step``,
    ``Trainer.run``, ``outer.<locals>.inner``. The script's syntax tree gets one more decorator on every
    matching ``def``, placed *last* in the decorator list so that it wraps the raw function before any other
    decorator runs. The decorator is an expression that adds no name to the script's namespace::

        @__import__("closuretrace.instrument.track", fromlist=["_"]).track
        def outer(...): ...

    It carries the line number of the ``def``, so tracebacks still point at the script's own lines.

``module:qualname``
    A function of an importable module (``helpers.losses:outer_loss``). Once the program imports the module,
    a post-import hook (:func:`closuretrace.instrument.imports.when_imported`) replaces the attribute on its
    owner (the module, or the class named by the qualname) with the wrapped function. Code that copied the
    function out of the module *before* it was imported cannot be reached; in practice the hook runs right
    after the module body, before any ``from module import name`` sees it.

Either way only the named functions get a wrapper: nothing calls ``sys.setprofile`` or ``sys.settrace``.
"""

from __future__ import annotations

import ast
import inspect
import keyword
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any

from closuretrace.instrument.imports import when_imported

#: option -> name of the wrapping function in :mod:`closuretrace.instrument.track`
TOOLS: dict[str, str] = {"--track": "track", "--cycle-on": "end_cycle_after"}

#: When one function is named by both options, the ``--track`` wrapper is innermost: the closure it records
#: is registered before the ``--cycle-on`` wrapper ends the cycle.
_ORDER = ("--cycle-on", "--track")

_TRACK_MODULE = "closuretrace.instrument.track"


@dataclass(frozen=True)
class FunctionName:
    """One ``--track``/``--cycle-on`` argument, parsed."""

    option: str
    text: str
    #: ``None`` for a function of the profiled script itself
    module: str | None
    qualname: str

    def __str__(self) -> str:
        return f"{self.option} {self.text}"


def parse_name(option: str, text: str, main_module: str | None = None) -> FunctionName:
    """Parse ``qualname`` or ``module:qualname``; raise :class:`ValueError` with a one-line message.

    ``__main__:f`` and ``<main_module>:f`` (the module run with ``-m``, which runs as ``__main__`` and is
    never imported under its own name) both mean the profiled program's own ``f``.
    """
    if option not in TOOLS:
        raise ValueError(f"unknown option {option!r}")
    module: str | None
    if ":" in text:
        module, _, qualname = text.partition(":")
        if not module or not all(p.isidentifier() for p in module.split(".")):
            raise ValueError(f"{text!r}: {module!r} is not a module name")
    else:
        module, qualname = None, text
    parts = qualname.split(".")
    valid = all((p.isidentifier() and not keyword.iskeyword(p)) or p == "<locals>" for p in parts)
    if not valid or parts[0] == "<locals>" or parts[-1] == "<locals>" or "<locals>.<locals>" in qualname:
        raise ValueError(f"{text!r}: {qualname!r} is not a function name (like f, Class.method, f.<locals>.g)")
    if module in ("__main__", main_module):
        module = None
    if module is not None and "<locals>" in parts:
        raise ValueError(f"{text!r}: a function local to another function can only be named in the program itself")
    return FunctionName(option=option, text=text, module=module, qualname=qualname)


def _tool_expr(tool: str, where: ast.AST) -> ast.expr:
    """``__import__("closuretrace.instrument.track", fromlist=["_"]).<tool>`` located at ``where``."""
    call = ast.Call(
        func=ast.Name(id="__import__", ctx=ast.Load()),
        args=[ast.Constant(_TRACK_MODULE)],
        keywords=[ast.keyword(arg="fromlist", value=ast.List(elts=[ast.Constant("_")], ctx=ast.Load()))],
    )
    expr = ast.Attribute(value=call, attr=tool, ctx=ast.Load())
    for node in ast.walk(expr):
        ast.copy_location(node, where)
    return expr


class _Decorate(ast.NodeTransformer):
    """Appends tool decorators to every ``def`` whose qualname is wanted (computed like CPython does)."""

    def __init__(self, wanted: dict[str, list[str]]) -> None:
        self.wanted = wanted
        self.matched: set[str] = set()
        self._scope: list[str] = []

    def _def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        qualname = ".".join([*self._scope, node.name])
        for tool in self.wanted.get(qualname, ()):
            node.decorator_list.append(_tool_expr(tool, node))
            self.matched.add(qualname)
        self._scope += [node.name, "<locals>"]
        try:
            self.generic_visit(node)
        finally:
            del self._scope[-2:]
        return node

    visit_FunctionDef = _def
    visit_AsyncFunctionDef = _def

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._scope.append(node.name)
        try:
            self.generic_visit(node)
        finally:
            self._scope.pop()
        return node


def _wrap_attribute(module: ModuleType, qualname: str, tool: Callable[[Any], Any]) -> None:
    """Replace ``module.<qualname>`` with ``tool(function)``; raise :class:`LookupError` saying why not."""
    parts = qualname.split(".")
    owner: Any = module
    for i, part in enumerate(parts[:-1]):
        try:
            owner = getattr(owner, part)
        except AttributeError:
            raise LookupError(f"{module.__name__} has no attribute {'.'.join(parts[: i + 1])!r}") from None
    last = parts[-1]
    try:
        raw = inspect.getattr_static(owner, last)
    except AttributeError:
        raise LookupError(f"{module.__name__} has no attribute {qualname!r}") from None
    new: Any
    if isinstance(raw, staticmethod):
        new = staticmethod(tool(raw.__func__))
    elif isinstance(raw, classmethod):
        new = classmethod(tool(raw.__func__))
    elif callable(raw):
        new = tool(raw)
    else:
        raise LookupError(f"{module.__name__}.{qualname} is a {type(raw).__name__}, not a function")
    setattr(owner, last, new)


class Instrumentation:
    """The functions named by ``--track`` and ``--cycle-on``, and which of them were found.

    :meth:`compile_main` applies the names without a module to the program's source; :meth:`install_hooks`
    arranges for the ``module:qualname`` ones to be wrapped when their module is imported. :meth:`unmatched`
    lists the names that never matched anything, as warning lines.
    """

    def __init__(
        self, track: Sequence[str] = (), cycle_on: Sequence[str] = (), main_module: str | None = None
    ) -> None:
        names: list[FunctionName] = []
        for option, texts in (("--track", track), ("--cycle-on", cycle_on)):
            for text in texts:
                try:
                    name = parse_name(option, text, main_module)
                except ValueError as exc:
                    raise ValueError(f"{option}: {exc}") from None
                if name not in names:
                    names.append(name)
        self.names = names
        self._matched: set[FunctionName] = set()
        self._why: dict[FunctionName, str] = {}
        self._cancels: list[Callable[[], None]] = []
        #: names whose module was imported while the hooks were installed
        self._imported: set[str] = set()

    @property
    def main_names(self) -> list[FunctionName]:
        return [n for n in self.names if n.module is None]

    # -- the program's own functions --------------------------------------------------------------------
    def compile_main(self, source: str | bytes, filename: str) -> CodeType:
        """Compile the program's source with its named functions decorated.

        Raises :class:`SyntaxError` (or :class:`ValueError` for null bytes) like :func:`compile`.
        """
        main = self.main_names
        if not main:
            return compile(source, filename, "exec", dont_inherit=True)
        wanted: dict[str, list[str]] = {}
        for option in _ORDER:
            for n in main:
                if n.option == option:
                    wanted.setdefault(n.qualname, []).append(TOOLS[option])
        tree = ast.parse(source, filename)
        visitor = _Decorate(wanted)
        tree = visitor.visit(tree)
        ast.fix_missing_locations(tree)
        for n in main:
            if n.qualname in visitor.matched:
                self._matched.add(n)
            else:
                self._why[n] = "no def with that name in the program"
        return compile(tree, filename, "exec", dont_inherit=True)

    def source_unavailable(self, why: str) -> None:
        """The program runs from code without source: its own named functions cannot be decorated."""
        for n in self.main_names:
            self._why[n] = why

    # -- functions of importable modules ------------------------------------------------------------------
    def install_hooks(self) -> None:
        """Wrap each ``module:qualname`` function as soon as its module is imported (at once if it is)."""
        by_module: dict[str, list[FunctionName]] = {}
        for option in _ORDER[::-1]:  # innermost wrapper first
            for n in self.names:
                if n.module is not None and n.option == option:
                    by_module.setdefault(n.module, []).append(n)
        for module_name, names in by_module.items():
            self._cancels.append(when_imported(module_name, self._hook(names)))

    def _hook(self, names: list[FunctionName]) -> Callable[[ModuleType], None]:
        def wrap(module: ModuleType) -> None:
            from closuretrace.instrument import track as track_module

            self._imported.add(module.__name__)
            for n in names:
                tool = getattr(track_module, TOOLS[n.option])
                try:
                    _wrap_attribute(module, n.qualname, tool)
                except LookupError as exc:
                    self._why[n] = str(exc)
                except Exception as exc:  # never break the program's import because of the tool
                    self._why[n] = f"could not wrap it ({type(exc).__name__}: {exc})"
                else:
                    self._matched.add(n)

        return wrap

    def remove_hooks(self) -> None:
        """Cancel the hooks of modules that were never imported (wrapped functions stay wrapped)."""
        for cancel in self._cancels:
            cancel()
        self._cancels.clear()

    # -- report -------------------------------------------------------------------------------------------
    def unmatched(self) -> list[str]:
        """One warning line per name that wrapped nothing, e.g. ``--cycle-on foo matched no function (...)``."""
        out: list[str] = []
        for n in self.names:
            if n in self._matched:
                continue
            why = self._why.get(n)
            if why is None and n.module is not None and n.module not in self._imported:
                why = f"module {n.module} was never imported"
            out.append(f"{n} matched no function" + (f" ({why})" if why else ""))
        return out
