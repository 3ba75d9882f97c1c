"""The tree keeps the shape of its data flow (docs/architecture.md): checked by walking the source, not by trust.

* no import cycle between closuretrace's modules, counting every import: module level, inside functions, and
  under ``if TYPE_CHECKING:``;
* no module over :data:`MAX_LINES` lines;
* renderers only format: they import the session model, units and other renderers, never the analysis, the
  instrumentation, the probes, the experiment, the profiler or the runner;
* the pytest plugin stays a thin shell (under :data:`PLUGIN_MAX_LINES` lines), as do the CLI's commands: no
  module of theirs defines a probe or a profiler subclass.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "closuretrace"
MAX_LINES = 400
PLUGIN_MAX_LINES = 300
#: What a renderer may import (module name prefixes).
RENDERER_MAY_IMPORT = ("closuretrace.session", "closuretrace.units", "closuretrace._version", "closuretrace.renderers")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The closuretrace module ``name`` refers to (a name inside a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """Every closuretrace module that module ``name`` imports, wherever the import statement is."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from pkg import sub" depends on the submodule; "from mod import name" on the module.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        for target in targets:
            if target == "closuretrace" or target.startswith("closuretrace."):
                resolved = _resolve(target)
                if resolved is not None and resolved != name:
                    found.add(resolved)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_imports_it_must() -> None:
    # The checks below are only as good as this walk: it finds a module-level, an in-function and a
    # TYPE_CHECKING import, and relative imports.
    assert "closuretrace.session" in GRAPH["closuretrace.renderers.markdown"]
    assert "closuretrace.analysis" in GRAPH["closuretrace.profiler"]  # imported inside finish()
    assert "closuretrace.session.model" in GRAPH["closuretrace.instrument.state"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_no_module_over_the_line_limit() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: split them by job"


def test_renderers_only_format() -> None:
    bad = {
        name: sorted(d for d in deps if not d.startswith(RENDERER_MAY_IMPORT))
        for name, deps in GRAPH.items()
        if name.startswith("closuretrace.renderers")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_shells_are_thin() -> None:
    plugin = MODULES["closuretrace.pytest_plugin"]
    assert len(plugin.read_text().splitlines()) < PLUGIN_MAX_LINES
    shells = [n for n in MODULES if n == "closuretrace.pytest_plugin" or n.startswith("closuretrace.cli")]
    for name in shells:
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not bases & {"Probe", "Profiler", "HeapProbe"}, f"{name}.{node.name} is not shell code"
