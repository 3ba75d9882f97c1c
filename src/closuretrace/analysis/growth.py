"""The growth set of a run, what holds it, and which holders are causes: the chains of the report.

The growth set: the objects born after the warm-up and before the last cycle began, still alive at the end (an
object of the last cycle may just not have been replaced yet; the cycles before it show what accumulates).
Births come from the heap probe's markers (:meth:`closuretrace.recording.LiveHeap.birth_markers`).

For each leaking metric, the growth is measured in the metric's own terms: objects of the metric's types
(``tf_func_graphs``), the watched closures (``closures_alive``), every object (``gc_objects`` and other counts),
or bytes for byte metrics (RSS), where the growth is the metric's own (slope x cycles) and Python objects may
explain only part of it. A holder is a **cause** of a metric when letting go of it alone, or together with the
holders in ``joint_with``, frees at least :data:`MATERIAL` of that growth; otherwise a chain through it is a
**path** with its figures. When no holder explains a byte metric's growth, the session says so in plain words
(:attr:`~closuretrace.session.Session.unexplained`) instead of naming an unrelated chain.
"""

from __future__ import annotations

import bisect
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closuretrace.analysis.buffers import large_buffers
from closuretrace.analysis.chain_labels import describe, label_path, short_type
from closuretrace.analysis.chains import find_root_path
from closuretrace.analysis.holders import HolderGraph, Label
from closuretrace.instrument.captures import qualified_name
from closuretrace.probes import metric_def
from closuretrace.recording import Recording
from closuretrace.session import Retained, RetentionChain, Session, Verdict
from closuretrace.session.retention import Role
from closuretrace.units import fmt_bytes, fmt_rate

__all__ = ["MATERIAL", "Growth", "born_after", "growth_of", "holder_chains"]

#: The share of a metric's growth a holder (or a group of joint holders) must free to be called its cause.
MATERIAL = 0.5


@dataclass
class Growth:
    """The holder graph of a run's growth, and when each node was born."""

    graph: HolderGraph
    #: (first node index, cycle): nodes from that index on were born in that cycle or later
    births: list[tuple[int, int]]
    #: cycles whose objects are counted (after the warm-up, before the last)
    cycles: int
    #: id of each watched closure alive -> how reports name it (``closure #serial qualname``)
    closures: dict[int, str] = field(default_factory=dict)

    def born(self, node: int) -> int | None:
        i = bisect.bisect_right([b[0] for b in self.births], node) - 1
        return self.births[i][1] if i >= 0 else None


def growth_of(recording: Recording, warmup: int, ignore: list[Any]) -> Growth | str:
    """The growth set of ``recording`` as a holder graph, or why there is none (a sentence)."""
    live = recording.live
    markers = live.birth_markers() if live is not None else {}
    n = len(recording.cycles)
    first, last = max(warmup - 1, 0), n - 2
    if first not in markers or last not in markers or last <= first:
        return "too few cycles with birth markers after the warm-up to tell the growth"
    found = born_after(markers, first, last, ignore)
    if isinstance(found, str):
        return found
    new, counted, births, old = found
    try:
        graph = HolderGraph(new, counted=counted, ignore=[*ignore, markers], scan=old)
    finally:
        new.clear()
        old.clear()
    return Growth(graph=graph, births=births, cycles=last - first)


def born_after(
    markers: dict[int, Any], first: int, last: int, ignore: list[Any]
) -> tuple[list[Any], int, list[tuple[int, int]], list[Any]] | str:
    """The objects listed after marker ``first`` in ``gc.get_objects(2)`` (the last full collection must be
    after the markers), how many of them precede marker ``last`` (the counted growth), the births
    ``(first index, cycle)``, and the objects before the marker (the only ones that can be sources: objects
    made after the last full collection are the analysis' own); or why the heap's order cannot tell."""
    cycles = sorted(c for c in markers if c >= first)
    objs = gc.get_objects(2)
    try:
        ids = list(map(id, objs))  # compared as ints: no object's __eq__ runs
        where: dict[int, int] = {}
        at = 0
        for c in cycles:
            try:
                at = where[c] = ids.index(id(markers[c]), at)
            except ValueError:
                return "the heap's order no longer tells when objects were born (the birth markers moved)"
        skip = {id(m) for m in markers.values()}
        skip.update(id(o) for o in ignore)
        skip.update((id(ignore), id(ids), id(where)))
        new: list[Any] = []
        births: list[tuple[int, int]] = []
        counted = 0
        for k, c in enumerate(cycles):
            end = where[cycles[k + 1]] if k + 1 < len(cycles) else len(objs)
            births.append((len(new), c + 1))
            new.extend(o for o, i in zip(objs[where[c] + 1 : end], ids[where[c] + 1 : end]) if i not in skip)
            if k + 1 < len(cycles) and cycles[k + 1] == last:
                counted = len(new)
        old = objs[: where[first]]
        ids.clear()
    finally:
        objs.clear()
        del objs
    return new, counted, births, old


@dataclass
class _Measure:
    """One metric's growth in its own terms, per label of the graph."""

    by_label: dict[Label, int]
    objects: dict[Label, int]
    nbytes: dict[Label, int]
    total: float
    in_bytes: bool
    want: Callable[[object], bool] | None


def _measure(growth: Growth, verdict: Verdict, closures: dict[int, str]) -> _Measure:
    d = metric_def(verdict.metric)
    want: Callable[[object], bool] | None = None
    if d.types:
        classes = tuple(c for c in (_resolve(t) for t in d.types) if c is not None)
        want = (lambda o: isinstance(o, classes)) if classes else None
    elif verdict.metric == "closures_alive":
        want = lambda o: id(o) in closures  # noqa: E731
    objects, nbytes = growth.graph.tally(want)
    if verdict.unit == "bytes":
        return _Measure(nbytes, objects, nbytes, max(verdict.slope_per_cycle, 0.0) * growth.cycles, True, want)
    return _Measure(objects, objects, nbytes, float(sum(objects.values())), False, want)


def holder_chains(
    session: Session, recording: Recording, ignore: list[Any]
) -> tuple[list[RetentionChain], list[str]] | str:
    """Chains through the holders of each leaking metric's growth (causes first) and the sentences for growth no
    holder explains; or why the growth could not be analysed (then the caller searches plain chains)."""
    found = growth_of(recording, session.warmup, ignore)
    if isinstance(found, str):
        return found
    graph = found.graph
    closures = found.closures
    if recording.live is not None:
        for rec, obj in recording.live.closures():
            closures[id(obj)] = f"closure #{rec.serial} {rec.qualname}"
            del obj
    out: dict[str, RetentionChain] = {}
    unexplained: list[str] = []
    names: dict[int, tuple[str, str | None, list[object], str | None]] = {}
    own = [*ignore, *graph.own_objects(), names, out, found]
    try:
        leaks = sorted(session.leaks(), key=lambda v: (not metric_def(v.metric).types, v.metric != "closures_alive"))
        for v in leaks:
            m = _measure(found, v, closures)
            _explain(found, session, v, m, out, unexplained, names, own)
    finally:
        for _, _, path, _ in names.values():
            path.clear()
        names.clear()
        own.clear()
        graph.release()
    chains = sorted(out.values(), key=lambda c: c.role != "cause")
    return chains, unexplained


def _explain(
    growth: Growth, session: Session, v: Verdict, m: _Measure, out: dict[str, RetentionChain],
    unexplained: list[str], names: dict[int, Any], own: list[Any],
) -> None:
    total = m.total
    label = session.metric_info(v.metric).label or v.metric
    if total <= 0:
        if m.in_bytes:
            unexplained.append(_unexplained_text(label, v, 0, growth.cycles, own))
        return
    alone = {lab: x for lab, x in m.by_label.items() if isinstance(lab, int) and lab >= 0}
    causes = [s for s, x in sorted(alone.items(), key=lambda kv: -kv[1]) if x / total >= MATERIAL]
    groups: list[tuple[tuple[int, ...], int]] = []
    for lab in sorted((lab for lab in m.by_label if isinstance(lab, tuple)), key=len):
        if any(s in causes for s in lab) or any(set(g).issubset(lab) for g, _ in groups):
            continue
        freed = _freed(m.by_label, lab)
        if freed / total >= MATERIAL:
            groups.append((lab, freed))
    for s in causes:
        _add(growth, v, m, s, "cause", out, names, own, None)
    for lab, freed in groups:
        for s in lab:
            _add(growth, v, m, s, "cause", out, names, own, (lab, freed))
    if causes or groups:
        return
    python = sum(m.by_label.values())
    if m.in_bytes and python / total < MATERIAL:
        unexplained.append(_unexplained_text(label, v, python, growth.cycles, own))
        return
    best = max(alone, key=lambda s: alone[s]) if alone else None
    if best is not None and alone[best] > 0:
        _add(growth, v, m, best, "path", out, names, own, None)
        return
    unseen = m.by_label.get(None, 0) / total
    unexplained.append(
        f"{label}: no single holder or small group of holders frees a material share of the growth; "
        f"{unseen:.0%} of it is held only by references the garbage collector cannot see (C code)."
    )


def _freed(by_label: dict[Label, int], group: tuple[int, ...]) -> int:
    """What clearing every holder of ``group`` frees: the objects reached only from holders of the group."""
    members = set(group)
    return sum(
        x for lab, x in by_label.items()
        if (isinstance(lab, int) and lab in members) or (isinstance(lab, tuple) and members.issuperset(lab))
    )


def _add(
    growth: Growth, v: Verdict, m: _Measure, s: int, role: Role, out: dict[str, RetentionChain],
    names: dict[int, Any], own: list[Any], group: tuple[tuple[int, ...], int] | None,
) -> None:
    holder, root, prefix, note = _name(growth, s, names, own)
    share = m.by_label.get(s, 0) / m.total
    retained = Retained(m.objects.get(s, 0), m.nbytes.get(s, 0), share, {v.metric: share})
    chain = out.get(holder)
    if chain is not None:
        if v.metric not in chain.metrics:
            chain.metrics.append(v.metric)
        if chain.retains is not None:
            chain.retains.shares[v.metric] = share
        if role == "cause":
            chain.role = "cause"
        return
    want = m.want or _specific(growth)
    path = growth.graph.path_to(s, want)
    target = path[-1] if path else None
    born = growth.born(growth.graph.index[id(target)]) if target is not None else None
    tname = qualified_name(type(target)) if target is not None else None
    hops = label_path([*prefix, *path], root) if root is not None else []
    path.clear()
    if target is None or tname is None:
        what = "(nothing)"
    elif id(target) in growth.closures:
        what = growth.closures[id(target)]
    elif callable(target) and type(target).__module__ == "builtins":
        what = describe(target)
    else:
        what = f"{tname.rsplit('.', 1)[-1]} object ({tname})"
    chain = RetentionChain(
        target=what,
        metrics=[v.metric], chain=hops, found=root is not None, born_cycle=born, root=root, note=note,
        target_type=tname, role=role, retains=retained, holder=holder,
    )
    del target
    if group is not None:
        lab, freed = group
        chain.joint_with = [_name(growth, t, names, own)[0] for t in lab if t != s]
        chain.joint_retains = Retained(
            _freed(m.objects, lab), _freed(m.nbytes, lab), freed / m.total, {v.metric: freed / m.total}
        )
    out[holder] = chain


_Named = tuple[str, str | None, list[object], str | None]


def _name(growth: Growth, s: int, names: dict[int, Any], own: list[Any]) -> _Named:
    """(holder, root, objects from the root's child down to the holder's container, note) of source ``s``."""
    hit = names.get(s)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    src = growth.graph.sources[s]
    if src.kind in ("global", "local"):
        result: _Named = (src.name, src.name, [], None)
    else:
        entry = src.entry
        rp = find_root_path(entry, ignore=[*own, src, names])
        if not rp.found or rp.root is None:
            rp.path.clear()
            result = (f"(unnamed {short_type(entry)})", None, [], rp.note)
        else:
            holder = _holder_text(rp.root, label_path(list(rp.path), rp.root))
            if src.kind == "attribute":
                holder += f".{src.key}"
            result = (holder, rp.root, rp.path, rp.note)
        del entry
    names[s] = result
    return result


def _holder_text(root: str, hops: list[str]) -> str:
    """``mod.name.attr['key']`` from the hops of a chain (edges that are not attributes or keys joined by →)."""
    text = root
    for hop in hops[1:]:
        edge = hop.split(" → ", 1)[0]
        text += edge if edge.startswith((".", "[")) else f" → {edge}"
    return text


def _specific(growth: Growth) -> Callable[[object], bool]:
    """A chain's target for metrics that count everything: the nearest object of a type that is not a builtin."""
    return lambda o: type(o).__module__ != "builtins"


def _unexplained_text(label: str, v: Verdict, python: int, cycles: int, own: list[Any]) -> str:
    grown = max(v.slope_per_cycle, 0.0) * cycles
    pct = f"{100 * python / grown:.0f}%" if grown > 0 else "none"
    buffers = ""
    if grown > 0:
        # Large bytes/arrays are not tracked by the gc: no marker dates them, so the growth set cannot hold one
        # an old container keeps. Before blaming native memory, see whether containers hold that much in them.
        holders = [h for h in large_buffers(ignore={id(o) for o in own} | {id(own)}) if h.nbytes >= 0.1 * grown][:3]
        held = sum({k: n for h in holders for k, n in h.buffers.items()}.values())  # each buffer once
        if holders:
            where = "; ".join(f"{h.name} holds {h.count} ({fmt_bytes(h.nbytes)})" for h in holders)
            buffers = (
                f" Large buffers the garbage collector does not track (bytes, bytearray, arrays) hold "
                f"{fmt_bytes(held)} ({100 * held / grown:.0f}% of that growth): {where}; their birth cycle cannot "
                "be told, so none is shown as the cause, but if these containers grow every cycle, they are what "
                "to clear."
            )
        if held >= MATERIAL * grown:
            return (
                f"{label} growth ({fmt_rate(v.slope_per_cycle, v.unit)}, {fmt_bytes(grown)} over {cycles} cycle(s)) "
                f"is not in the objects born since the warm-up.{buffers}"
            )
    return (
        f"{label} growth ({fmt_rate(v.slope_per_cycle, v.unit)}) is not explained by Python objects: those born "
        f"since the warm-up and still alive hold {fmt_bytes(python)} of the {fmt_bytes(grown)} it grew over "
        f"{cycles} cycle(s) ({pct}); the rest is native memory (C/C++ allocations, allocator caches) that no "
        f"Python holder keeps.{buffers}"
    )


def _resolve(qualified: str) -> type | None:
    mod_name, _, attr = qualified.rpartition(".")
    cls = getattr(sys.modules.get(mod_name), attr, None)
    return cls if isinstance(cls, type) else None
