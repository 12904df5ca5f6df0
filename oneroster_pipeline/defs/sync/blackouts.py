"""Blackout ranges (e.g. summer break): dates on which the scheduled sync skips. Framework-free.

`ONEROSTER_BLACKOUT_DATES` is a comma-separated list of dates or inclusive ranges in ISO form:
`2026-06-15..2026-08-20, 2026-12-24..2027-01-01, 2027-02-16`.
"""

from __future__ import annotations

from datetime import date


def parse_blackout_dates(text: str | None) -> list[tuple[date, date]]:
    """The inclusive (first, last) ranges; a malformed entry is a ValueError naming the variable and the entry."""
    ranges = []
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        first, _, last = entry.partition("..")
        try:
            start, end = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
        except ValueError:
            raise ValueError(f"ONEROSTER_BLACKOUT_DATES: {entry!r} is not a date (YYYY-MM-DD) or a range "
                             "(YYYY-MM-DD..YYYY-MM-DD)") from None
        if end < start:
            raise ValueError(f"ONEROSTER_BLACKOUT_DATES: {entry!r} ends before it starts")
        ranges.append((start, end))
    return ranges


def blackout_containing(day: date, text: str | None) -> tuple[date, date] | None:
    """The blackout range that contains `day`, if any."""
    return next(((start, end) for start, end in parse_blackout_dates(text) if start <= day <= end), None)
