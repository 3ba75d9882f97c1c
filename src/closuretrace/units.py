"""Units: how sizes and counts are written and read, in one place for the analysis, the renderers, the
command line (``--threshold rss_bytes=1MiB``) and the pytest marker (``max_rss_growth="2 MiB"``)."""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def fmt_bytes(n: float, signed: bool = False) -> str:
    """``fmt_bytes(4_800_000) == '4.6 MiB'``; signed adds ``+`` to positive values."""
    if n is None or not math.isfinite(n):
        return "n/a"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    v = abs(float(n))
    for unit in _UNITS:
        if v < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{v:.0f} B"
            return f"{sign}{v:.1f} {unit}"
        v /= 1024
    return f"{sign}{v:.1f} TiB"  # pragma: no cover


def fmt_value(value: float, unit: str, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None or math.isnan(value) else ("+inf" if value > 0 else "-inf")
    if unit == "bytes":
        return fmt_bytes(value, signed)
    if abs(value) >= 100 or float(value).is_integer():
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.2f}"
    return ("+" + text) if signed and value > 0 else text


_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``"1MiB"`` -> 1048576, ``"1.5KB"`` -> 1500, ``"512"`` -> 512 (case-insensitive units
    B, KB/MB/GB/TB powers of 1000, KiB/MiB/GiB/TiB powers of 1024). Raise :class:`ValueError` otherwise.

    >>> parse_size("1MiB"), parse_size("2 kb"), parse_size("64")
    (1048576, 2000, 64)
    """
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size (like 512, 64KiB, 1.5MB)")
    number, unit = m.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"{text!r}: unknown size unit {unit!r} (use B, KB, MB, GB, KiB, MiB or GiB)")
    return round(float(number) * factor)


def parse_threshold(text: str) -> tuple[str, float]:
    """``METRIC=VALUE`` -> ``(metric, value)``; sizes for byte metrics, plain numbers for the others."""
    from closuretrace.probes import known_metric, metric_def, metric_names

    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"{text!r}: expected METRIC=VALUE, e.g. rss_bytes=1MiB or gc_objects=200")
    if not known_metric(name):
        raise ValueError(f"{text!r}: unknown metric {name!r} (known: {', '.join(metric_names())})")
    if metric_def(name).unit == "bytes":
        return name, float(parse_size(value))
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number ({name} counts {metric_def(name).unit})") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"{text!r}: the threshold must be a finite number >= 0")
    return name, number


def fmt_rate(slope: float | None, unit: str) -> str:
    """``+4.6 MiB/cycle``; ``n/a`` for a metric a session did not measure or could not fit."""
    if slope is None:
        return "not measured"
    text = fmt_value(slope, unit, True)
    return text if text == "n/a" else f"{text}/cycle"


def fmt_ratio(ratio: float | None) -> str:
    """``x0.02``, ``x1.00``, ``x350``; empty when there is no ratio."""
    if ratio is None or not math.isfinite(ratio):
        return ""
    r = abs(ratio)
    if r == 0:
        return "x0"
    if r >= 100:
        text = f"{ratio:,.0f}"
    elif r >= 0.01:
        text = f"{ratio:.2f}"
    else:
        text = f"{ratio:.1g}"
    return f"x{text}"


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else ``None`` (JSON has no NaN or inf)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
