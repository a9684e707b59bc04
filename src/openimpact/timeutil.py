"""Times on the wire are ISO-8601 UTC with milliseconds and a ``Z``; in the
database they are integer milliseconds since the epoch (portable, exact, and a
natural keyset for pagination)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS_PER_DAY = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The last second formatted: the times of a write batch, or of a page of
# records, mostly share their second. One tuple, replaced whole, so threads
# never see a second paired with another second's text.
_last_second: tuple[int | None, str] = (None, "")


def ms_to_iso(ms: int) -> str:
    # gmtime and %-formatting: twice as fast as datetime.strftime, which
    # counted on a 1000-record page (issue 4).
    global _last_second
    second, prefix = _last_second
    if ms // 1000 != second:
        second = ms // 1000
        t = time.gmtime(second)
        prefix = "%04d-%02d-%02dT%02d:%02d:%02d" % (  # noqa: UP031
            t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec
        )  # fmt: skip
        _last_second = (second, prefix)
    return "%s.%03dZ" % (prefix, ms % 1000)  # noqa: UP031


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_iso(value: str) -> datetime | None:
    """Parse an ISO-8601 timestamp; None when it is not one. Naive timestamps
    are read as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def parse_iso_ms(value: str) -> int | None:
    """Parse an ISO-8601 timestamp to epoch ms; None when it is not one.

    Sub-millisecond precision that is not zero cannot name an impact, so it is
    rejected too.
    """
    dt = parse_iso(value)
    if dt is None or dt.microsecond % 1000:
        return None
    try:
        return datetime_to_ms(dt)
    except OverflowError:
        return None


def day_of(ms: int) -> str:
    return ms_to_iso(ms)[:10]


def day_start_ms(d: date) -> int:
    return datetime_to_ms(datetime(d.year, d.month, d.day, tzinfo=UTC))
