"""The session: what one run measured, as plain data.

A :class:`Session` holds no live objects (no closures, no models, no weak references): only numbers and
strings, so it can be saved as versioned JSON, loaded back in another process and rendered again. Everything
the instrumentation and the probes see is turned into these dataclasses by :class:`closuretrace.Profiler`;
the analysis fills in verdicts, retention chains and advice; the renderers only read them.

Example::

    >>> from closuretrace.session import load_session
    >>> session = load_session("reports/train-20261124T120000Z.json")   # doctest: +SKIP
    >>> [v.metric for v in session.verdicts if v.leak]                   # doctest: +SKIP
    ['rss_bytes', 'gc_objects', 'tf_func_graphs']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from closuretrace.session.codec import MAX_DEPTH, SCHEMA_VERSION, SessionError, finite, too_deep, write_atomic
from closuretrace.session.compare import CompareSession, Comparison, ScenarioResult
from closuretrace.session.model import (
    Capture,
    ClosureRecord,
    CycleSample,
    Event,
    GrowingType,
    MetricInfo,
    RunInfo,
    Session,
    Shape,
    Status,
    Step,
    Verdict,
    VerdictState,
)
from closuretrace.session.retention import Retained, RetentionChain, Role, Verification

__all__ = [
    "MAX_DEPTH",
    "SCHEMA_VERSION",
    "Capture",
    "ClosureRecord",
    "CompareSession",
    "Comparison",
    "CycleSample",
    "Event",
    "GrowingType",
    "MetricInfo",
    "Retained",
    "RetentionChain",
    "Role",
    "RunInfo",
    "ScenarioResult",
    "Session",
    "SessionError",
    "Shape",
    "Status",
    "Step",
    "Verdict",
    "VerdictState",
    "Verification",
    "finite",
    "load_session",
    "write_atomic",
]


def load_session(path: str | os.PathLike[str]) -> Session | CompareSession:
    """Read a session JSON file; raise :class:`SessionError` with a one-line message if it is not one.

    A ``closuretrace profile`` report gives a :class:`Session`, a ``closuretrace compare`` report (``kind:
    "compare"``) a :class:`CompareSession`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SessionError(f"{p}: is a directory, not a session file") from None
    except UnicodeDecodeError:
        raise SessionError(f"{p}: not a text file (not a closuretrace session)") from None
    except OSError as exc:
        raise SessionError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg}); truncated?") from None
    except RecursionError:
        raise SessionError(f"{p}: JSON nested too deeply") from None
    if too_deep(data):
        raise SessionError(f"{p}: JSON nested more than {MAX_DEPTH} levels (not a closuretrace session)")
    try:
        if isinstance(data, dict) and data.get("kind") == "compare":
            return CompareSession.from_dict(data)
        return Session.from_dict(data)
    except SessionError as exc:
        raise SessionError(f"{p}: {exc}") from None
