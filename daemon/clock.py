"""Time: the one set of time helpers (aware UTC everywhere) and the clock a process runs by."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(timezone.utc)


def to_utc(dt: datetime) -> datetime:
    """`dt` in UTC; a naive value is taken to be UTC already (the database hands those out)."""
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def aware(dt: datetime | None) -> datetime | None:
    """A naive value from the database made aware (UTC); None stays None."""
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt
