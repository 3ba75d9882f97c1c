"""Where a retention chain may start: module globals (every ``sys.modules`` namespace) and, when no global
holds an object, the local variables of running functions (see :mod:`closuretrace.analysis.chains`)."""

from __future__ import annotations

import os
import sys
import types

from closuretrace.analysis.chain_labels import code_qualname, isa, type_dict
from closuretrace.analysis.kernel_names import notebook_namespace

__all__ = ["executing_frame_ids", "frame_fallback", "is_own_frame", "module_roots"]

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def module_roots() -> dict[int, str]:
    """``id(module.__dict__) -> module name`` for every module in ``sys.modules``."""
    roots: dict[int, str] = {}
    getdict = type_dict(types.ModuleType)["__dict__"].__get__
    for name, mod in list(sys.modules.items()):
        if not isa(mod, types.ModuleType):
            continue
        try:
            d = getdict(mod)
        except Exception:
            continue
        if type(d) is not dict:
            continue
        own = d.get("__name__")
        if id(d) not in roots or own == name:  # prefer the module's own name over an alias
            roots[id(d)] = name
    ns = notebook_namespace()
    if ns is not None:
        roots[id(ns)] = "__main__"  # a notebook's globals: the user's __main__, not the kernel's launcher
    return roots


def is_own_frame(frame: types.FrameType) -> bool:
    """A frame of closuretrace itself: its locals hold the target and are never a root."""
    try:
        return frame.f_code.co_filename.startswith(_PKG_DIR)
    except Exception:
        return True


def executing_frame_ids() -> set[int]:
    """Ids of the frames every thread is running now (invisible to the garbage collector)."""
    ids: set[int] = set()
    tops = sys._current_frames()
    top: types.FrameType | None = None
    f: types.FrameType | None = None
    try:
        for top in tops.values():
            f = top
            while f is not None:
                ids.add(id(f))
                f = f.f_back
    finally:
        # ``top`` may be this very frame: unbound, or the frame would keep itself (and its callers) alive
        tops.clear()
        top = f = None
    return ids



def frame_fallback(depth: dict[int, int], skip: set[int]) -> tuple[str, int] | None:
    """``("frame of f local 'x'", id of the object)`` for the running frame's local nearest the target
    (frames of closuretrace itself and frames passed in ``ignore`` excepted)."""
    best: tuple[int, str, int] | None = None
    tops = sys._current_frames()
    top: types.FrameType | None = None
    f: types.FrameType | None = None
    try:
        for top in tops.values():
            f = top
            while f is not None:
                if id(f) not in skip and not is_own_frame(f):
                    hit = _frame_local_hit(f, depth)
                    if hit is not None and (best is None or hit[0] < best[0]):
                        best = (hit[0], f"frame of {code_qualname(f.f_code)} local '{hit[1]}'", hit[2])
                f = f.f_back
    except Exception:
        pass
    finally:
        tops.clear()
        top = f = None  # see executing_frame_ids
    return None if best is None else (best[1], best[2])


def _frame_local_hit(f: types.FrameType, depth: dict[int, int]) -> tuple[int, str, int] | None:
    try:
        local_vars = f.f_locals
        items = list(dict.items(local_vars)) if isa(local_vars, dict) else list(local_vars.items())
    except Exception:
        return None
    best: tuple[int, str, int] | None = None
    try:
        for name, value in items:
            d = depth.get(id(value))
            if d is not None and (best is None or d < best[0]):
                best = (d, str(name), id(value))
    finally:
        items.clear()
    return best
