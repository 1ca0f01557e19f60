"""Numbers for people: one place that writes a KPI value or a change in its unit."""

from __future__ import annotations

import math


def fmt_value(value: float | None, unit: str, currency: str = "CNY") -> str:
    """A KPI value for people: shares as %, hours with one decimal, counts with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "share":
        return f"{value:.1%}"
    if unit == "hours":
        return f"{value:,.1f} h"
    if unit == "days":
        return f"{value:,.1f} d"
    if unit == "per_1000":
        return f"{value:,.1f} ‰"
    if unit == "score":
        return f"{value:.2f}"
    if unit == "currency":
        return f"{currency} {value:,.0f}"
    return f"{value:,.0f}"


def fmt_change(this: float | None, last: float | None, unit: str) -> str:
    """Change from last week: points for shares, absolute plus relative otherwise."""
    if this is None or last is None or math.isnan(this) or math.isnan(last):
        return "–"
    diff = this - last
    if unit == "share":
        return f"{diff * 100:+.1f} pp"
    if unit == "score":
        return f"{diff:+.2f}"
    if unit == "per_1000":
        return f"{diff:+.1f} ‰"
    rel = f" ({diff / last:+.1%})" if last else ""
    if unit in ("hours", "days"):
        return f"{diff:+.1f} {unit[0]}{rel}"
    return f"{diff:+,.0f}{rel}"
