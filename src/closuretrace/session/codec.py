"""The JSON side of sessions: versioning, strict field checks, atomic writes.

Every reader of a report goes through :func:`build` (each field checked against its declared type) and every
writer through :func:`dumps` (no NaN, no lone surrogates) and :func:`write_atomic` (no half-written file).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import types
import typing
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class SessionError(ValueError):
    """A file that is not a closuretrace session this version can read; the message is one line for users."""


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        # backslashreplace: a lone surrogate (a non-UTF-8 argv or path) must not cost the user the report.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
        # mkstemp makes the file private (0600); a report is for sharing, so follow the umask like open() does.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


# -- helpers ------------------------------------------------------------------------------------------------

#: A session nests about 6 levels; free-form fields (settings, event details) add a few. Deeper is refused, so
#: no renderer meets a structure it would recurse through.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(data: Any) -> str:
    """JSON text; lone surrogates (from non-UTF-8 argv or paths) written as ``\\uXXXX`` so the file is UTF-8."""
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def warmup_of(settings: dict[str, Any]) -> int:
    w = settings.get("warmup", 1)
    return w if isinstance(w, int) and not isinstance(w, bool) and w >= 0 else 1


def as_float(v: Any) -> float:
    if v is None:
        return math.nan
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise SessionError(f"malformed closuretrace session: {v!r:.40} is not a number")
    return float(v)


def strings(d: dict[str, Any], key: str) -> list[str]:
    items = as_list(d, key)
    if not all(isinstance(a, str) for a in items):
        raise SessionError(f"malformed closuretrace session: {key!r} holds something other than text")
    return list(items)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finite(obj: Any) -> Any:
    """JSON has no NaN/inf: turn them into null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def as_object(x: Any, what: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise SessionError(f"malformed closuretrace session: a {what} is not an object")
    return x


def as_list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key, [])
    if not isinstance(v, list):
        raise SessionError(f"malformed closuretrace session: {key!r} is not a list")
    return v


def as_int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise SessionError(f"malformed closuretrace session: {key!r} is not an integer")
    return v


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON) has the type a dataclass field declares: ``int | None``, ``list[str]``..."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        # A state written by a newer closuretrace still loads: any value of the literals' type.
        return any(type(value) is type(a) for a in typing.get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(hint)
        return isinstance(value, dict) and all(conforms(a, k) and conforms(b, v) for a, b in value.items())
    if isinstance(hint, type) and is_dataclass(hint):
        return isinstance(value, dict)  # built by the caller
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def build(cls: Any, d: Any) -> Any:
    """``cls`` from a JSON object, every field checked against its declared type (null only where optional;
    null in a float field is how NaN and infinities are written, see :func:`finite`)."""
    d = as_object(d, cls.__name__)
    known = cls.__dataclass_fields__
    obj = cls(**{k: v for k, v in d.items() if k in known})
    hints = _hints(cls)
    for name in known:
        v = getattr(obj, name)
        hint = hints[name]
        if v is None and hint is float:
            setattr(obj, name, math.nan)
        elif not conforms(v, hint):
            raise SessionError(
                f"malformed closuretrace session: {cls.__name__}.{name} is not {_hint_words(hint)} ({v!r:.40})"
            )
    return obj


def _hint_words(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def step_values(d: dict[str, Any]) -> dict[str, Any]:
    """One cycle's timing and trace count; values that are not finite numbers are dropped."""
    return {str(k): v for k, v in d.items() if is_number(v)}


def check_version(version: Any) -> int:
    if not isinstance(version, int) or isinstance(version, bool):
        raise SessionError(f"not a closuretrace session (schema_version {version!r})")
    if version > SCHEMA_VERSION:
        raise SessionError(
            f"session schema_version {version} is newer than this closuretrace reads ({SCHEMA_VERSION}); "
            "upgrade closuretrace"
        )
    if version < 1:
        raise SessionError(f"unknown session schema_version {version}")
    return version
