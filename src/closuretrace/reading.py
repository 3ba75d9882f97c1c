"""Reading a saved report back, with every judgement in place.

A file written by an older closuretrace may lack what the analysis now decides (verdict states, the report's
status and finding, a compare report's summary and ranking): :func:`read_session` fills that in, with the same
rules that judged a fresh run, so a report rendered from a file says what it would have said live.
"""

from __future__ import annotations

import os

from closuretrace.session import CompareSession, Session, load_session

__all__ = ["read_session"]


def read_session(path: str | os.PathLike[str]) -> Session | CompareSession:
    """The session in ``path``, judged; :class:`~closuretrace.session.SessionError` (one line) if it is not one."""
    session = load_session(path)
    if isinstance(session, CompareSession):
        from closuretrace.experiment.conclusion import conclude as conclude_compare

        return conclude_compare(session, fresh=False)
    if not session.status:
        from closuretrace.analysis import conclude

        conclude(session)
    return session
