"""Post-import hooks: run a callback once a module has been imported, without importing it ourselves.

This is how Keras hooks switch on only when the profiled program imports Keras, and how ``--track
module:qualname`` wraps a function of a module that is not loaded yet.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Callback = Callable[[ModuleType], None]


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {}
        self._busy: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.callbacks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _Loader(loader, self)
        return spec

    def fire(self, module: ModuleType) -> None:
        for cb in self.callbacks.pop(module.__name__, []):
            cb(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, finder: _Finder) -> None:
        self._inner = inner
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back so the module looks untouched (reload, pkgutil, __loader__ checks).
        if module.__spec__ is not None:
            module.__spec__.loader = self._inner
        try:
            module.__loader__ = self._inner
        except AttributeError:
            pass
        self._inner.exec_module(module)
        self._finder.fire(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_FINDER: _Finder | None = None


def when_imported(name: str, callback: Callback) -> Callable[[], None]:
    """Call ``callback(module)`` as soon as module ``name`` is imported (at once if it already is).

    Returns a function that cancels the callback if it has not run yet.
    """
    global _FINDER
    mod = sys.modules.get(name)
    if mod is not None:
        callback(mod)
        return lambda: None
    if _FINDER is None or _FINDER not in sys.meta_path:
        _FINDER = _Finder()
        sys.meta_path.insert(0, _FINDER)
    finder = _FINDER
    finder.callbacks.setdefault(name, []).append(callback)

    def cancel() -> None:
        cbs = finder.callbacks.get(name)
        if cbs and callback in cbs:
            cbs.remove(callback)
            if not cbs:
                del finder.callbacks[name]
        if not finder.callbacks and finder in sys.meta_path:
            sys.meta_path.remove(finder)

    return cancel
