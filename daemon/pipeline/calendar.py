"""Business-hours calendars and business-time arithmetic (pure).

The SLA stage measures targets in *business time*: the seconds during which a calendar is
open. A `BusinessCalendar` is a time zone, the open intervals of each weekday (several a
day allowed) and the days it is closed (fixed dates, yearly month-days, and national
holidays that the loader expanded into fixed dates). `routing.yaml`'s simpler `calendar:`
(the `business_hours` condition's) converts with `from_routing`, so one definition serves
both routing and SLAs.

Conventions (tests pin each of them):
- Instants are aware datetimes; a naive one is taken as UTC.
  Results are aware UTC datetimes.
- Interval boundaries are local wall-clock times. A boundary is "the first instant at
  which the clock reads that time or later": in the hour a DST change skips (Berlin
  2026-03-29 02:00-03:00) it is the instant of the jump; in the hour repeated in autumn it
  is the first occurrence. So business time is real elapsed time: a 24x7 day is 23 h or
  25 h long on those days, and 08:00-18:00 stays 10 h.
- `add_business_time(start, d)` is the LATEST instant by which exactly `d` of business
  time has passed since `start`. When the time runs out at a closing time (18:00) the
  answer is the next opening (08:00 the next business day), never 18:00: every instant in
  between has the same business time behind it, and "met" is defined as
  `business_time_between(start, t) <= d`, which holds up to the next opening. A zero
  duration from outside business hours gives the next opening.
- Touching intervals (12:00-13:00 and 13:00-14:00, or midnight in a 24x7 calendar) are
  merged, so no boundary is invented inside open time.

Cost: each calendar lazily builds, per local year, the open intervals as UTC microseconds
with cumulative sums (about 1-3 ms per year, kept on the instance), after which both
operations are two binary searches.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
US = 1_000_000                          # microseconds per second
_MIN_US = 60 * US
_DAY_US = 86_400 * US
_YEAR_US = 31_556_952 * US              # mean Gregorian year: a first guess of an instant's year
DAY = 24 * 60                           # minutes
MAX_YEARS = 50                          # add_business_time gives up after this many years
_ONE = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)

Interval = tuple[int, int]              # (from, to) in minutes since local midnight, to <= 1440
ALWAYS: tuple[tuple[Interval, ...], ...] = tuple(((0, DAY),) for _ in range(7))
OFFICE: tuple[tuple[Interval, ...], ...] = tuple(((9 * 60, 17 * 60),) if d < 5 else () for d in range(7))


@dataclass(frozen=True)
class _Year:
    """One local year of a calendar: open intervals [starts[i], ends[i]) in UTC
    microseconds, `cum[i]` the open time before interval i, within [lo, hi)."""

    year: int
    lo: int
    hi: int
    starts: list[int]
    ends: list[int]
    cum: list[int]
    total: int


@dataclass(frozen=True)
class BusinessCalendar:
    """When the clock runs: a time zone, the open intervals of each weekday (index
    0=Monday), and closed days: `holidays` (fixed dates) and `yearly` (month, day)."""

    name: str
    timezone: str = "UTC"
    week: tuple[tuple[Interval, ...], ...] = OFFICE
    holidays: frozenset[date] = frozenset()
    yearly: frozenset[tuple[int, int]] = frozenset()
    description: str = ""
    # memo: local year -> its timeline; key 0 holds the year used last
    _years: dict[int, _Year] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError(f"calendar {self.name!r}: week needs 7 days, got {len(self.week)}")
        for day in self.week:
            last = -1
            for start, end in day:
                if not 0 <= start < end <= DAY or start < last:
                    raise ValueError(f"calendar {self.name!r}: bad or overlapping interval {(start, end)}")
                last = end
        object.__setattr__(self, "_tz", ZoneInfo(self.timezone))

    @property
    def always_open(self) -> bool:
        return self.week == ALWAYS and not self.holidays and not self.yearly

    def local(self, at: datetime) -> datetime:
        """`at` (naive: UTC) as wall-clock time in the calendar's zone."""
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(self._tz)

    def closed_on(self, day: date) -> bool:
        """True for a holiday (fixed or yearly) — not for an ordinary closed weekday."""
        return day in self.holidays or (day.month, day.day) in self.yearly

    def is_open(self, at: datetime) -> bool:
        """Whether `at` lies in open time (an interval includes its start, not its end)."""
        t = to_us(at)
        yr = self._year_at(t)
        i = bisect_right(yr.starts, t) - 1
        return i >= 0 and t < yr.ends[i]

    def open_intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open intervals of local date `day` as UTC datetimes (for explanations)."""
        if self.closed_on(day):
            return ()
        out = []
        for start, end in self.week[day.weekday()]:
            a, b = _wall_us(self._tz, day, start), _wall_us(self._tz, day, end)
            if b > a:
                out.append((from_us(a), from_us(b)))
        return tuple(out)

    # ---------------------------------------------------------------- the timeline
    def _year(self, year: int) -> _Year:
        got = self._years.get(year)
        if got is None:
            got = self._years[year] = _build_year(self, year)
        return got

    def _year_at(self, t: int) -> _Year:
        yr = self._years.get(0)                            # the last year used: the usual answer
        if yr is not None and yr.lo <= t < yr.hi:
            return yr
        yr = self._year(1970 + t // _YEAR_US)
        while t < yr.lo:
            yr = self._year(yr.year - 1)
        while t >= yr.hi:
            yr = self._year(yr.year + 1)
        self._years[0] = yr
        return yr

    def _position(self, t: int) -> tuple[int, int]:
        """(local year, open time from the start of that year to t)."""
        yr = self._year_at(t)
        i = bisect_right(yr.starts, t) - 1
        if i < 0:
            return yr.year, 0
        return yr.year, yr.cum[i] + min(t - yr.starts[i], yr.ends[i] - yr.starts[i])


def _build_year(cal: BusinessCalendar, year: int) -> _Year:
    tz = cal._tz  # type: ignore[attr-defined]
    day, stop = date(year, 1, 1), date(year + 1, 1, 1)
    starts: list[int] = []
    ends: list[int] = []
    while day < stop:
        if not cal.closed_on(day):
            for start, end in cal.week[day.weekday()]:
                a, b = _wall_us(tz, day, start), _wall_us(tz, day, end)
                if b <= a:
                    continue
                if ends and ends[-1] == a:
                    ends[-1] = b
                else:
                    starts.append(a)
                    ends.append(b)
        day += _ONE_DAY
    cum, total = [], 0
    for a, b in zip(starts, ends):
        cum.append(total)
        total += b - a
    return _Year(year, _wall_us(tz, date(year, 1, 1), 0), _wall_us(tz, stop, 0), starts, ends, cum, total)


def _wall_us(tz: ZoneInfo, day: date, minute: int) -> int:
    """The first instant (UTC µs) at which the wall clock in `tz` reads `day` `minute` or later."""
    if minute >= DAY:
        day, minute = day + _ONE_DAY, minute - DAY
    naive = (day.toordinal() - _EPOCH_ORD) * _DAY_US + minute * _MIN_US
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
    before, after = wall.utcoffset(), wall.replace(fold=1).utcoffset()
    if before is None or after is None:                      # pragma: no cover - ZoneInfo always answers
        raise ValueError(f"time zone {tz} gives no offset")
    if before >= after:                                      # ordinary time, or the repeated hour: first
        return naive - before // _ONE
    # In the gap: `naive - after` is before the jump, `naive - before` after it; find the jump.
    lo, hi = (naive - after // _ONE) // US, (naive - before // _ONE) // US   # seconds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (EPOCH + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi * US


# ------------------------------------------------------------------ conversions
def to_us(at: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // _ONE


def from_us(t: int) -> datetime:
    return EPOCH + timedelta(microseconds=t)


# ------------------------------------------------------------------ arithmetic
def between_us(cal: BusinessCalendar, a: int, b: int) -> int:
    """Open time from a to b in µs; negative when b is before a."""
    if b < a:
        return -between_us(cal, b, a)
    ya, pa = cal._position(a)
    yb, pb = cal._position(b)
    if ya == yb:
        return pb - pa
    return cal._year(ya).total - pa + sum(cal._year(y).total for y in range(ya + 1, yb)) + pb


def add_us(cal: BusinessCalendar, start: int, duration: int) -> int:
    """The latest instant with exactly `duration` µs of open time after `start`."""
    if duration < 0:
        raise ValueError("a business-time duration cannot be negative")
    year, x = cal._position(start)
    x += duration
    for _ in range(MAX_YEARS + 1):
        yr = cal._year(year)
        if x < yr.total:
            i = bisect_right(yr.cum, x) - 1
            return yr.starts[i] + x - yr.cum[i]
        x -= yr.total
        year += 1
    raise ValueError(f"calendar {cal.name!r} has no open time within {MAX_YEARS} years")


def add_business_time(start: datetime, duration: timedelta, calendar: BusinessCalendar) -> datetime:
    """The latest instant by which `duration` of business time has passed since `start`
    (the next opening when it runs out at a closing time; see the module doc)."""
    return from_us(add_us(calendar, to_us(start), duration // _ONE))


def business_time_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> timedelta:
    """Business time from `a` to `b` (negative when `b` is earlier)."""
    return timedelta(microseconds=between_us(calendar, to_us(a), to_us(b)))


def next_open(at: datetime, calendar: BusinessCalendar) -> datetime:
    """`at` itself when open, else the next opening."""
    return add_business_time(at, timedelta(0), calendar)


class RoutingHours(Protocol):
    """routing.yaml's inline `calendar:` section (daemon.rules.declarations.Calendar)."""

    timezone: str
    days: frozenset[int]
    start: int
    end: int
    holidays: frozenset[date]


def from_routing(cal: RoutingHours | BusinessCalendar, name: str = "routing") -> BusinessCalendar:
    """routing.yaml's `calendar:` as a BusinessCalendar with the same `is_open` answers
    (a BusinessCalendar already is one and is returned as it is).

    A wrapping range (from 22:00 to 06:00) means, as in routing, the early and the late
    part of each listed day; from == to means the whole day."""
    if isinstance(cal, BusinessCalendar):
        return cal
    if cal.start < cal.end:
        day: tuple[Interval, ...] = ((cal.start, cal.end),)
    else:
        day = tuple(iv for iv in ((0, cal.end), (cal.start, DAY)) if iv[0] < iv[1])
    week = tuple(day if d in cal.days else () for d in range(7))
    return BusinessCalendar(name, cal.timezone, week, frozenset(cal.holidays),
                            description="routing.yaml calendar (business_hours)")
