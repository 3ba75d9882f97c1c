"""Units: how sizes and counts are written, in one place for the analysis and every renderer."""

from __future__ import annotations

import math

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
