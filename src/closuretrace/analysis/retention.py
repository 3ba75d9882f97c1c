"""For each leak verdict, choose a live object that shows the growth and search what keeps it alive.

The choice is generic: for ``closures_alive``, the earliest-born closure still alive from the factory whose
count grows most; for a metric that counts a type (``tf_func_graphs``), an instance of that type; for any other
metric, an instance of the steepest-growing type (specific types before builtins). Only objects born after the
warm-up and still alive at the end qualify, so a long-lived object made on purpose is not blamed.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from typing import Any

from closuretrace.analysis.chains import find_chain
from closuretrace.analysis.growth import holder_chains
from closuretrace.analysis.verdicts import measured
from closuretrace.instrument.captures import qualified_name
from closuretrace.probes import metric_def
from closuretrace.recording import LiveHeap, Recording
from closuretrace.session import RetentionChain, Session


def chains_for(session: Session, recording: Recording, ignore: Iterable[Any]) -> list[RetentionChain]:
    """The chains through the holders of the growth (:mod:`.growth`), with their roles and retained figures;
    it also sets ``session.unexplained``. Where the growth set cannot be told (too few cycles, no birth markers),
    one plain retention chain per leaking metric (metrics that share a target share the chain), with no role."""
    live = recording.live
    if not session.leaks() or live is None:
        return []

    own = list(ignore)
    try:
        held = holder_chains(session, recording, own)
    except Exception as exc:  # the plain chains below still explain something
        held = f"the holder analysis failed ({type(exc).__name__}: {exc})"
    finally:
        own.clear()
    if not isinstance(held, str):
        chains, session.unexplained = held
        return chains
    out: list[RetentionChain] = []
    by_target: dict[int, RetentionChain] = {}
    own = list(ignore)
    census = recording.census[session.warmup:]
    growing = {t for t, n in census[-1].items() if n > census[0].get(t, 0)} if census else set()
    # Metrics that count one type first: their targets are the most telling, and a generic metric (RSS, gc
    # objects) whose growth includes that type shares the chain instead of searching a second, longer one.
    leaks = sorted(session.leaks(), key=lambda v: (not metric_def(v.metric).types, v.metric != "closures_alive"))
    try:
        for verdict in leaks:
            shared = None
            if verdict.metric != "closures_alive" and not metric_def(verdict.metric).types:
                shared = next((c for c in out if c.found and c.target_type in growing), None)
            if shared is not None:
                shared.metrics.append(verdict.metric)
                continue
            picked = _pick(verdict.metric, session, live)
            if picked is None:
                out.append(
                    RetentionChain(
                        target="(no live object to start from)",
                        metrics=[verdict.metric],
                        chain=[],
                        found=False,
                        note="no object born after the warm-up was still alive to search from",
                    )
                )
                continue
            target, description, born = picked
            known = by_target.get(id(target))
            if known is not None:
                known.metrics.append(verdict.metric)
                del target
                continue
            chain = _search(recording, target, description, born, verdict.metric, [*own, out, by_target])
            by_target[id(target)] = chain
            out.append(chain)
            del target
    finally:
        own.clear()
        by_target.clear()
    return out


def _pick(metric: str, session: Session, live: LiveHeap) -> tuple[Any, str, int] | None:
    warmup = session.warmup
    if metric == "closures_alive":
        return _pick_closure(session, live, warmup)
    d = metric_def(metric)
    if d.types:
        classes = [c for c in (_resolve(t) for t in d.types) if c is not None]
        hit = _earliest(live, warmup, lambda name, obj: isinstance(obj, tuple(classes)))
        if hit is not None:
            return hit
    ranked = sorted(session.growing_types, key=lambda g: g.type.split(".")[0] in ("builtins",) or "." not in g.type)
    for g in ranked:
        hit = _earliest(live, warmup, lambda name, obj, want=g.type: name == want)
        if hit is not None:
            return hit
    return _pick_closure(session, live, warmup)


def _pick_closure(session: Session, live: LiveHeap, warmup: int) -> tuple[Any, str, int] | None:
    used = measured(session.cycles, warmup) or session.cycles
    if not used:
        return None
    first, last = used[0].closures_alive_by_factory, used[-1].closures_alive_by_factory
    growth = {f: n - first.get(f, 0) for f, n in last.items()}
    order = sorted(growth, key=lambda f: -growth[f])
    for factory in order:
        best: tuple[Any, str, int] | None = None
        for rec, obj in live.closures():
            if rec.factory != factory or rec.created_cycle < warmup:
                continue
            if best is None or rec.created_cycle < best[2]:
                best = (obj, f"closure #{rec.serial} {rec.qualname}", rec.created_cycle)
            del obj
        if best is not None:
            return best
    return None


def _earliest(live: LiveHeap, warmup: int, want: Any) -> tuple[Any, str, int] | None:
    best: tuple[Any, str, int] | None = None
    for name, cycle, obj in live.samples():
        if cycle >= warmup and (best is None or cycle < best[2]) and want(name, obj):
            best = (obj, f"{name.rsplit('.', 1)[-1]} object ({name})", cycle)
        del obj
    return best


def _resolve(qualified: str) -> type | None:
    mod_name, _, attr = qualified.rpartition(".")
    cls = getattr(sys.modules.get(mod_name), attr, None)
    return cls if isinstance(cls, type) else None


def alive_closure_chain(
    recording: Recording, ignore: Iterable[Any], skip_serials: Collection[int] = ()
) -> RetentionChain | None:
    """What keeps a watched closure alive now, whether or not ``closures_alive`` grows per cycle.

    For a limit on the closures alive at the end (``max_alive_closures`` in the pytest plugin), where one cycle
    and no leak verdict are enough to break it. The target is the earliest-created closure of the factory with
    the most closures alive; records whose serial is in ``skip_serials`` are never picked. ``None`` when no
    closure qualifies. Call it before the recording's live part is released.
    """
    live = recording.live
    if live is None:
        return None
    alive: dict[str, int] = {}
    for rec, obj in live.closures():
        if rec.serial not in skip_serials:
            alive[rec.factory] = alive.get(rec.factory, 0) + 1
        del obj
    if not alive:
        return None
    factory = max(sorted(alive), key=lambda f: alive[f])
    best: tuple[Any, str, int] | None = None
    for rec, obj in live.closures():
        if rec.factory == factory and rec.serial not in skip_serials and (best is None or rec.serial < best[2]):
            best = (obj, f"closure #{rec.serial} {rec.qualname}", rec.serial)
        del obj
    if best is None:  # pragma: no cover - collected between the two passes
        return None
    target, description, serial = best
    born = next((r.created_cycle for r in recording.closures if r.serial == serial), None)
    del best
    own = list(ignore)
    try:
        return _search(recording, target, description, born, "closures_alive", own)
    finally:
        own.clear()
        del target


def _search(
    recording: Recording, target: Any, description: str, born: int | None, metric: str, ignore: list[Any]
) -> RetentionChain:
    """The referrer search from ``target``, within the recording's depth and time limits, as a chain record."""
    opts = recording.options
    result = find_chain(target, ignore=ignore, max_depth=opts.chain_depth, timeout=opts.chain_timeout)
    return RetentionChain(
        target=description,
        metrics=[metric],
        chain=list(result.hops),
        found=result.found,
        born_cycle=born,
        root=result.root,
        note=result.note,
        target_type=qualified_name(type(target)),
    )
