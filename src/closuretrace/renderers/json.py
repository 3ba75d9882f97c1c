"""The session as versioned JSON (``schema_version`` 1): the format every other renderer can be rebuilt from."""

from __future__ import annotations

from closuretrace.session import Session


def render(session: Session) -> str:
    """The session as JSON text; :func:`closuretrace.load_session` reads it back."""
    return session.to_json() + "\n"
