"""Business-time arithmetic: weekends, holidays, time zones, DST, boundaries, 24x7.

Every instant is given explicitly (the clock is an argument); nothing sleeps.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from zoneinfo import ZoneInfo

from daemon.pipeline.calendar import (ALWAYS, BusinessCalendar, add_business_time, business_time_between,
                                      from_routing, next_open)
from daemon.rules.declarations import Calendar

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
M = timedelta(minutes=1)


def weekdays(*intervals: tuple[int, int], days: range = range(5)) -> tuple:
    return tuple(tuple(intervals) if d in days else () for d in range(7))


def hm(h: int, m: int = 0) -> int:
    return h * 60 + m


OFFICE = BusinessCalendar("office", "Europe/Berlin", weekdays((hm(8), hm(18))),
                          holidays=frozenset({date(2026, 4, 3), date(2026, 4, 6)}), yearly=frozenset({(12, 24)}))
LUNCH = BusinessCalendar("lunch", "Europe/Berlin", weekdays((hm(8), hm(12)), (hm(13), hm(17))))
NY = BusinessCalendar("ny", "America/New_York", weekdays((hm(9), hm(17))))
ALWAYS_BERLIN = BusinessCalendar("24x7", "Europe/Berlin", ALWAYS)
ALWAYS_UTC = BusinessCalendar("24x7", "UTC", ALWAYS)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def add(start: datetime, d: timedelta, cal: BusinessCalendar = OFFICE) -> datetime:
    return add_business_time(start, d, cal)


# ------------------------------------------------------------------ basics and weekends
def test_within_one_day():
    assert add(berlin(2026, 3, 2, 9), 2 * H) == berlin(2026, 3, 2, 11)
    assert business_time_between(berlin(2026, 3, 2, 9), berlin(2026, 3, 2, 11), OFFICE) == 2 * H


def test_results_are_aware_utc():
    got = add(berlin(2026, 3, 2, 9), H)
    assert got.tzinfo is UTC and got == datetime(2026, 3, 2, 9, tzinfo=UTC)   # 10:00 CET


def test_weekend_is_skipped():
    assert add(berlin(2026, 3, 6, 16), 4 * H) == berlin(2026, 3, 9, 10)        # Fri 16:00 + 4h = Mon 10:00
    assert business_time_between(berlin(2026, 3, 6, 16), berlin(2026, 3, 9, 10), OFFICE) == 4 * H


def test_start_outside_hours_counts_from_the_next_opening():
    assert add(berlin(2026, 3, 7, 11), 2 * H) == berlin(2026, 3, 9, 10)        # Saturday
    assert add(berlin(2026, 3, 2, 6, 30), 30 * M) == berlin(2026, 3, 2, 8, 30)  # before opening
    assert add(berlin(2026, 3, 2, 21), H) == berlin(2026, 3, 3, 9)              # after closing


def test_between_is_signed_and_zero_outside_hours():
    a, b = berlin(2026, 3, 2, 9), berlin(2026, 3, 3, 9)
    assert business_time_between(b, a, OFFICE) == -business_time_between(a, b, OFFICE) == -10 * H
    assert business_time_between(berlin(2026, 3, 7, 9), berlin(2026, 3, 8, 20), OFFICE) == timedelta(0)


def test_naive_datetimes_are_utc():
    assert add(datetime(2026, 3, 2, 8), H) == datetime(2026, 3, 2, 9, tzinfo=UTC)   # 09:00 -> 10:00 CET


def test_negative_duration_is_refused():
    with pytest.raises(ValueError):
        add(berlin(2026, 3, 2, 9), -H)


def test_a_calendar_that_never_opens_gives_up():
    never = BusinessCalendar("never", "UTC", tuple(() for _ in range(7)))
    with pytest.raises(ValueError, match="no open time"):
        add(datetime(2026, 1, 1, tzinfo=UTC), H, never)


# ------------------------------------------------------------------ the boundary convention
def test_running_out_at_closing_time_is_due_the_next_business_morning():
    # Mon 16:00 + 2h: the business time is used up at 18:00, but no business time passes
    # until Tue 08:00, so the deadline (the latest instant that still meets it) is 08:00.
    due = add(berlin(2026, 3, 2, 16), 2 * H)
    assert due == berlin(2026, 3, 3, 8)
    assert business_time_between(berlin(2026, 3, 2, 16), berlin(2026, 3, 3, 7, 59), OFFICE) == 2 * H
    assert business_time_between(berlin(2026, 3, 2, 16), due, OFFICE) == 2 * H
    assert business_time_between(berlin(2026, 3, 2, 16), due + timedelta(microseconds=1), OFFICE) > 2 * H


def test_friday_closing_time_rolls_over_the_weekend_and_holidays():
    assert add(berlin(2026, 3, 6, 17), H) == berlin(2026, 3, 9, 8)
    assert add(berlin(2026, 4, 2, 17), H) == berlin(2026, 4, 7, 8)              # Good Friday, Easter Monday


def test_zero_duration_is_now_when_open_else_the_next_opening():
    assert add(berlin(2026, 3, 2, 10), timedelta(0)) == berlin(2026, 3, 2, 10)
    assert add(berlin(2026, 3, 2, 18), timedelta(0)) == berlin(2026, 3, 3, 8)   # 18:00 is closed
    assert add(berlin(2026, 3, 2, 8), timedelta(0)) == berlin(2026, 3, 2, 8)    # 08:00 is open
    assert next_open(berlin(2026, 3, 7, 12), OFFICE) == berlin(2026, 3, 9, 8)


def test_open_includes_the_start_and_excludes_the_end():
    assert OFFICE.is_open(berlin(2026, 3, 2, 8)) and OFFICE.is_open(berlin(2026, 3, 2, 17, 59, 59))
    assert not OFFICE.is_open(berlin(2026, 3, 2, 18)) and not OFFICE.is_open(berlin(2026, 3, 2, 7, 59))


def test_microseconds_are_exact():
    start = berlin(2026, 3, 2, 9, 0, 0, 1)
    got = add(start, timedelta(hours=30, microseconds=7))
    assert business_time_between(start, got, OFFICE) == timedelta(hours=30, microseconds=7)


# ------------------------------------------------------------------ several intervals a day
def test_lunch_break_is_skipped():
    assert add(berlin(2026, 3, 2, 11), 2 * H, LUNCH) == berlin(2026, 3, 2, 14)
    assert business_time_between(berlin(2026, 3, 2, 11), berlin(2026, 3, 2, 14), LUNCH) == 2 * H
    assert add(berlin(2026, 3, 2, 11), H, LUNCH) == berlin(2026, 3, 2, 13)      # runs out at 12:00 -> 13:00
    assert add(berlin(2026, 3, 2, 12, 30), 10 * M, LUNCH) == berlin(2026, 3, 2, 13, 10)


def test_touching_intervals_are_one():
    split = BusinessCalendar("split", "UTC", weekdays((hm(8), hm(12)), (hm(12), hm(16))))
    assert add(datetime(2026, 3, 2, 10, tzinfo=UTC), 2 * H, split) == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert split.is_open(datetime(2026, 3, 2, 12, tzinfo=UTC))


# ------------------------------------------------------------------ holidays
def test_fixed_and_yearly_holidays_are_closed():
    assert add(berlin(2026, 4, 2, 17), 2 * H) == berlin(2026, 4, 7, 9)
    assert add(berlin(2026, 12, 23, 17), 2 * H) == berlin(2026, 12, 25, 9)      # 12-24 every year
    assert add(berlin(2027, 12, 23, 17), 2 * H) == berlin(2027, 12, 27, 9)      # 24th Fri, then weekend
    assert OFFICE.closed_on(date(2031, 12, 24)) and not OFFICE.closed_on(date(2031, 12, 23))
    assert OFFICE.open_intervals(date(2026, 4, 3)) == ()


def test_across_the_new_year():
    cal = BusinessCalendar("ny", "Europe/Berlin", weekdays((hm(8), hm(18))), yearly=frozenset({(12, 31), (1, 1)}))
    assert add(berlin(2026, 12, 30, 17), 3 * H, cal) == berlin(2027, 1, 4, 10)   # Thu 31, Fri 1 closed
    assert business_time_between(berlin(2026, 12, 30, 17), berlin(2027, 1, 4, 10), cal) == 3 * H
    assert business_time_between(berlin(2025, 1, 1), berlin(2027, 1, 1), cal) == \
        business_time_between(berlin(2025, 1, 1), berlin(2026, 1, 1), cal) + \
        business_time_between(berlin(2026, 1, 1), berlin(2027, 1, 1), cal)


# ------------------------------------------------------------------ time zones and DST
def test_the_same_wall_hours_in_another_zone():
    # 09:00-17:00 New York (EST, UTC-5 in early March): Mon 2 March 14:00 UTC = 09:00 there.
    assert add(datetime(2026, 3, 2, 14, tzinfo=UTC), 8 * H, NY) == datetime(2026, 3, 3, 14, tzinfo=UTC)
    assert NY.is_open(datetime(2026, 3, 2, 21, 59, tzinfo=UTC)) and not NY.is_open(datetime(2026, 3, 2, 22, tzinfo=UTC))


def test_berlin_spring_forward_weekend_keeps_wall_hours():
    # Fri 27 March 17:00 CET (UTC+1) + 2h -> Mon 30 March 09:00 CEST (UTC+2) = 07:00 UTC.
    due = add(berlin(2026, 3, 27, 17), 2 * H)
    assert due == datetime(2026, 3, 30, 7, tzinfo=UTC) == berlin(2026, 3, 30, 9)


def test_berlin_fall_back_weekend_keeps_wall_hours():
    due = add(berlin(2026, 10, 23, 17), 2 * H)
    assert due == datetime(2026, 10, 26, 8, tzinfo=UTC) == berlin(2026, 10, 26, 9)


def test_24x7_in_berlin_counts_real_time_on_dst_days():
    assert business_time_between(berlin(2026, 3, 29), berlin(2026, 3, 30), ALWAYS_BERLIN) == 23 * H
    assert business_time_between(berlin(2026, 10, 25), berlin(2026, 10, 26), ALWAYS_BERLIN) == 25 * H
    start = berlin(2026, 3, 28, 22)                  # 22:00 CET; 24 real hours later it is 23:00 CEST
    # (beware: `start + 24 * H` on a zoned datetime is wall-clock arithmetic in Python)
    assert add(start, 24 * H, ALWAYS_BERLIN) == start.astimezone(UTC) + 24 * H == berlin(2026, 3, 29, 23)


def test_an_interval_in_the_skipped_hour_starts_when_the_clock_jumps():
    night = BusinessCalendar("night", "Europe/Berlin", tuple(((hm(2, 30), hm(5)),) for _ in range(7)))
    (a, b), = night.open_intervals(date(2026, 3, 29))                 # 02:30 does not exist that day
    assert a == datetime(2026, 3, 29, 1, tzinfo=UTC) and b - a == 2 * H
    assert business_time_between(berlin(2026, 3, 29), berlin(2026, 3, 30), night) == 2 * H
    assert add(berlin(2026, 3, 29), 30 * M, night) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_an_interval_in_the_repeated_hour_starts_at_its_first_occurrence():
    night = BusinessCalendar("night", "Europe/Berlin", tuple(((hm(2, 30), hm(5)),) for _ in range(7)))
    (a, b), = night.open_intervals(date(2026, 10, 25))
    assert a == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)             # 02:30 CEST, not 02:30 CET
    assert b == datetime(2026, 10, 25, 4, tzinfo=UTC) and b - a == timedelta(hours=3, minutes=30)


def test_new_york_dst_both_directions():
    always = BusinessCalendar("ny24", "America/New_York", ALWAYS)
    day = lambda *a: datetime(*a, tzinfo=NEW_YORK)  # noqa: E731
    assert business_time_between(day(2026, 3, 8), day(2026, 3, 9), always) == 23 * H
    assert business_time_between(day(2026, 11, 1), day(2026, 11, 2), always) == 25 * H
    # Fri 6 March 16:00 EST + 2h -> Mon 9 March 10:00 EDT (14:00 UTC, not 15:00)
    assert add(day(2026, 3, 6, 16), 2 * H, NY) == datetime(2026, 3, 9, 14, tzinfo=UTC)
    assert add(day(2026, 10, 30, 16), 2 * H, NY) == datetime(2026, 11, 2, 15, tzinfo=UTC)


def test_a_pause_over_the_dst_night_in_a_24x7_zone():
    # 01:00 -> 04:00 local on the spring-forward night is 2 real hours; in autumn 4.
    assert business_time_between(berlin(2026, 3, 29, 1), berlin(2026, 3, 29, 4), ALWAYS_BERLIN) == 2 * H
    assert business_time_between(berlin(2026, 10, 25, 1), berlin(2026, 10, 25, 4), ALWAYS_BERLIN) == 4 * H


# ------------------------------------------------------------------ 24x7
def test_24x7_is_plain_elapsed_time_even_across_years():
    start = datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert add(start, 2 * H, ALWAYS_UTC) == datetime(2027, 1, 1, 1, tzinfo=UTC)
    assert add(datetime(2026, 12, 31, tzinfo=UTC), 24 * H, ALWAYS_UTC) == datetime(2027, 1, 1, tzinfo=UTC)
    assert business_time_between(start, start + timedelta(days=400), ALWAYS_UTC) == timedelta(days=400)
    assert ALWAYS_UTC.always_open and not OFFICE.always_open


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("cal", [OFFICE, LUNCH, NY, ALWAYS_BERLIN], ids=lambda c: c.name)
def test_add_and_between_agree(cal):
    rnd = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(300):
        start = base + timedelta(minutes=rnd.randrange(0, 2 * 365 * 24 * 60))
        d = timedelta(minutes=rnd.randrange(0, 200 * 60))
        due = add_business_time(start, d, cal)
        assert business_time_between(start, due, cal) == d
        if d:   # the latest such instant: any later instant has more business time behind it
            assert business_time_between(start, due + timedelta(seconds=1), cal) > d
        assert add_business_time(start, d + M, cal) > due


def test_routing_calendar_converts_with_the_same_answers():
    for routing in (Calendar("Europe/London", frozenset(range(5)), hm(8), hm(18), frozenset({date(2026, 12, 25)})),
                    Calendar("America/New_York", frozenset({0, 2, 5}), hm(22), hm(6))):   # wraps midnight
        cal = from_routing(routing)
        t = datetime(2026, 3, 1, tzinfo=UTC)
        for step in range(0, 60 * 24 * 21, 17):
            at = t + timedelta(minutes=step)
            assert cal.is_open(at) == routing.is_open(routing.local(at)), at
        t = datetime(2026, 12, 24, tzinfo=UTC)
        for step in range(0, 60 * 24 * 3, 30):
            at = t + timedelta(minutes=step)
            assert cal.is_open(at) == routing.is_open(routing.local(at)), at


def test_bad_weeks_are_refused():
    with pytest.raises(ValueError):
        BusinessCalendar("x", "UTC", weekdays((hm(9), hm(8))))
    with pytest.raises(ValueError):
        BusinessCalendar("x", "UTC", weekdays((hm(8), hm(12)), (hm(11), hm(13))))
