"""Analysis: every judgement closuretrace makes, from a :class:`~closuretrace.recording.Recording`.

:func:`analyse` turns what was recorded into a :class:`~closuretrace.session.Session`: a verdict per metric
(:mod:`.verdicts`, the one place the leak rule lives), the types that grow, the retention chains
(:mod:`.retention`, searched on the live heap), the report's status and finding (:func:`conclude`) and the
advice (:mod:`.advice`). Renderers only format what it decided.
"""

from __future__ import annotations

from collections.abc import Collection

from closuretrace.recording import Recording
from closuretrace.session import Session, Status, Verdict
from closuretrace.units import fmt_rate

__all__ = ["analyse", "conclude"]


def analyse(recording: Recording, *, alive_chain_skip: Collection[int] | None = None) -> Session:
    """Judge ``recording``. Call it before the recording's live part is released: chains need the heap.

    ``alive_chain_skip``: also search what keeps a watched closure alive at the end (even without a
    ``closures_alive`` leak), never starting from closures with these serials (the pytest plugin's
    ``max_alive_closures``); ``None`` skips that search.
    """
    from closuretrace.analysis import advice, retention, verdicts

    opts = recording.options
    session = Session(
        run=recording.run,
        settings=opts.to_settings(),
        metrics=list(recording.metrics),
        cycles=recording.cycles,
        closures=recording.closures,
        events=recording.events,
        verdicts=verdicts.verdicts(recording.cycles, opts.warmup, opts.thresholds),
        growing_types=verdicts.growing_types(recording.census, opts.warmup),
    )
    live = recording.live
    ignore = list(live.own()) if live is not None else []
    try:
        session.retention = retention.chains_for(session, recording, ignore=ignore)
        if alive_chain_skip is not None and session.chain_for("closures_alive") is None:
            chain = retention.alive_closure_chain(recording, [*ignore, session.retention], alive_chain_skip)
            if chain is not None:
                session.retention.append(chain)
    finally:
        ignore.clear()
    conclude(session)
    session.advice = advice.advise(session)
    return session


def conclude(session: Session) -> Session:
    """Set the report's status and finding from the session's verdicts (idempotent; also for loaded files)."""
    from closuretrace.analysis.verdicts import judge_verdicts

    judge_verdicts(session.verdicts)
    session.status = _status(session)
    session.finding = _finding(session, session.status)
    return session


def _status(session: Session) -> Status:
    if session.leaks():
        return "leak"
    if not session.verdicts or all(v.state == "too_few" for v in session.verdicts):
        return "inconclusive"
    return "flat"


def _finding(session: Session, status: str) -> str:
    from closuretrace.analysis.verdicts import MIN_CYCLES

    n = max((v.n_cycles for v in session.verdicts), default=0)
    warmup = session.warmup
    if status == "leak":
        parts = [
            f"{session.metric_info(v.metric).label or v.metric} {fmt_rate(v.slope_per_cycle, v.unit)}"
            for v in session.leaks()
        ]
        return f"{', '.join(parts)} (over {n} cycles after {warmup} warm-up)."
    if status == "inconclusive":
        from closuretrace.analysis.frameworks import unhooked_note

        note = unhooked_note(session)
        tail = f" {note}" if note else " Run more cycles."
        return f"{n} cycle(s) measured after {warmup} warm-up; a verdict needs at least {MIN_CYCLES}.{tail}"

    def label(v: Verdict) -> str:
        return session.metric_info(v.metric).label or v.metric

    growing = [label(v) for v in session.verdicts if v.state != "flat" and v.shape != "bounded"]
    bounded = [label(v) for v in session.verdicts if v.shape == "bounded" and v.state != "too_few"]
    tail = f"; {', '.join(growing)} grow(s) below the noise floor" if growing else ""
    tail += f"; {', '.join(bounded)} rose, then stopped (bounded)" if bounded else ""
    return f"nothing grows beyond its noise floor over {n} cycles after {warmup} warm-up{tail}."
