"""The improvement report's pure parts: status history, reopen, percentiles, weeks cut at the
period's ends, the change from the week before, and `[reports]` refused when it is wrong."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.report.figures import build_figures, median_p90, reopened, status_at
from daemon.report.render import delta, dur
from store.report_reads import TicketFacts
from tests.conftest import write_site_config

T0 = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)          # a Wednesday


def facts(n: int, created: datetime, statuses=(), answered: timedelta | None = None) -> TicketFacts:
    return TicketFacts(n, f"t{n}", "incident", "general", "P3", statuses[-1][1] if statuses else "new", "", "smtp",
                       created, created + answered if answered else None, tuple(statuses))


def test_status_history_and_reopen():
    t = facts(1, T0, ((T0 + timedelta(hours=1), "resolved"), (T0 + timedelta(hours=2), "open"),
                      (T0 + timedelta(hours=3), "closed")))
    assert status_at(t, T0) == "new" and status_at(t, T0 + timedelta(hours=1)) == "resolved"
    assert status_at(t, T0 + timedelta(hours=2, minutes=30)) == "open" and reopened(t)
    assert not reopened(facts(2, T0, ((T0, "open"), (T0 + timedelta(hours=1), "resolved"))))


def test_median_and_p90_by_nearest_rank():
    assert median_p90([]) == (None, None)
    hours = [timedelta(hours=h) for h in range(1, 11)]
    assert median_p90(hours) == (timedelta(hours=5, minutes=30), timedelta(hours=9))


def test_weeks_are_cut_at_the_period_and_backlog_counts_older_tickets():
    old = facts(1, T0 - timedelta(days=30))                                      # open all along
    a = facts(2, T0, ((T0 + timedelta(days=1), "resolved"),), answered=timedelta(hours=2))
    b = facts(3, T0 + timedelta(days=7), answered=timedelta(hours=4))
    f = build_figures([old, a, b], start=T0, end=T0 + timedelta(days=10), now=T0 + timedelta(days=10))
    assert [w.start.isoformat() for w in f.weeks] == ["2026-03-04T12:00:00+00:00", "2026-03-09T00:00:00+00:00"]
    assert [(w.created, w.resolved, w.backlog) for w in f.weeks] == [(1, 1, 1), (1, 0, 2)]
    assert f.tickets == 2 and f.backlog == 2 and f.oldest == timedelta(days=40)
    assert f.time("first_response").median == timedelta(hours=3) and f.satisfaction is None and f.problems is None


def test_change_from_the_week_before_and_durations():
    assert (delta(12, 10), delta(9, 10), delta(3, 0), delta(0, 0), delta(5, None)) == ("+20%", "-10%", "new", "=", "")
    assert (dur(None), dur(timedelta(minutes=90)), dur(timedelta(days=3, hours=12))) == ("-", "1h30m", "3.5 days")


@pytest.mark.parametrize("lines,message", [
    ('schedule = "hourly"', "reports.schedule: must be daily, weekly or monthly"),
    ("hour = 24", "reports.hour: must be 0..23"),
    ('to = ["boss"]', "reports.to: not an email address: 'boss'"),
])
def test_bad_reports_settings_are_refused_naming_the_key(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(write_site_config(tmp_path, f"[reports]\n{lines}\n")))
