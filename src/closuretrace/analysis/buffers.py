"""Large buffers the garbage collector does not track, and the containers that hold them.

``bytes``, ``bytearray``, ``str`` and NumPy arrays are not tracked by Python's gc, so no birth marker says when
one was made, and the growth set (objects born since the warm-up) cannot contain one that an *old* container
holds directly: ``kept.append(bytearray(10**6))`` or IPython's ``Out`` cache keeping every cell's array. Before
the analysis calls RSS growth "native memory", :func:`large_buffers` looks for such buffers: if old containers
hold as much as the growth in them, the report says where they are, and that their birth cannot be told,
instead of blaming C code.
"""

from __future__ import annotations

import collections
import gc
import sys
import types
from collections.abc import Collection
from dataclasses import dataclass, field

from closuretrace.analysis.chain_roots import module_roots
from closuretrace.analysis.kernel_names import kernel_note, notebook_namespace

__all__ = ["MIN_BUFFER", "BufferHolder", "large_buffers"]

#: Buffers smaller than this are not counted (a leak of small strings is in the gc counts already).
MIN_BUFFER = 64 * 1024


@dataclass
class BufferHolder:
    """A container that holds ``count`` large untracked buffers, ``nbytes`` in all; ``name`` says which.
    ``buffers``: their ids and sizes (a buffer two containers hold is in both)."""

    name: str
    count: int
    nbytes: int
    buffers: dict[int, int] = field(default_factory=dict)


def _global_names() -> dict[int, str]:
    """``id(value) -> "module.name"`` for every module global whose value is a container."""
    out: dict[int, str] = {}
    roots = module_roots()
    for d in _namespaces():
        mod_name = roots.get(id(d))
        if mod_name is None:
            continue
        for key, value in list(d.items()):
            if isinstance(key, str) and isinstance(value, _CONTAINERS):
                known = out.get(id(value))
                if known is None or (known.rpartition(".")[2].startswith("_") and not key.startswith("_")):
                    out[id(value)] = f"{mod_name}.{key}"  # a public name over an alias (Out over _oh)
    return out


#: Containers looked into. A dict or tuple that holds only untracked values is untracked itself (CPython drops it
#: from the gc), so IPython's ``Out`` full of arrays is not in ``gc.get_objects()``: globals are looked at too.
_CONTAINERS = (dict, list, tuple, set, frozenset, collections.deque)


def _namespaces() -> list[dict[str, object]]:
    """Every module's namespace, and a notebook's."""
    out = [d for m in list(sys.modules.values()) if type(d := getattr(m, "__dict__", None)) is dict]
    ns = notebook_namespace()
    return [*out, ns] if ns is not None else out


def large_buffers(ignore: Collection[int] = (), min_size: int = MIN_BUFFER) -> list[BufferHolder]:
    """Containers holding untracked buffers of at least ``min_size`` bytes, named ones (module globals, a
    notebook's names) first, then by total size; objects whose ids are in ``ignore`` (the tool's) are skipped."""
    names = _global_names()
    found: dict[int, BufferHolder] = {}
    get_referents, is_tracked, getsizeof = gc.get_referents, gc.is_tracked, sys.getsizeof
    untracked_globals = [v for d in _namespaces() for v in list(d.values()) if isinstance(v, _CONTAINERS)
                         and not is_tracked(v)]
    for o in [*gc.get_objects(), *untracked_globals]:
        if id(o) in ignore or type(o) is types.FrameType:
            continue
        for r in get_referents(o):
            if is_tracked(r) or type(r) is type:
                continue
            try:
                size = getsizeof(r)
            except Exception:
                continue
            if size < min_size:
                continue
            holder = found.get(id(o))
            if holder is None:
                name = names.get(id(o))
                label = f"{name}{kernel_note(name)}" if name else f"a {type(o).__name__} (not a module global)"
                holder = found[id(o)] = BufferHolder(label, 0, 0)
            if id(r) not in holder.buffers:
                holder.buffers[id(r)] = size
                holder.count += 1
                holder.nbytes += size
    return sorted(found.values(), key=lambda h: (h.name.startswith("a "), -h.nbytes))
