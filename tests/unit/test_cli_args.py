"""Command-line parsing: global options work before and after the command; --from/--to dates."""
from datetime import datetime, timezone

import pytest

from daemon.cli import _parser
from daemon.cli_args import parse_day


class Usage(Exception):
    pass


def test_from_and_to_take_a_whole_day_or_a_time():
    utc = timezone.utc
    assert parse_day("2026-03-02", "--from", Usage) == datetime(2026, 3, 2, tzinfo=utc)
    assert parse_day("2026-03-29", "--to", Usage, end=True) == datetime(2026, 3, 30, tzinfo=utc)   # included
    assert parse_day("2026-03-29T12:00+01:00", "--to", Usage, end=True) == datetime(2026, 3, 29, 11, tzinfo=utc)
    assert parse_day("", "--from", Usage) is None and parse_day(None, "--to", Usage, end=True) is None
    with pytest.raises(Usage, match=r"--to: not an ISO date: '29\.3\.2026'"):
        parse_day("29.3.2026", "--to", Usage)


def test_config_before_or_after_command():
    assert _parser().parse_args(["--config", "a.toml", "tickets"]).config == "a.toml"
    assert _parser().parse_args(["tickets", "--config", "b.toml"]).config == "b.toml"
    assert _parser().parse_args(["tickets"]).config is None
    assert _parser().parse_args(["--debug", "show", "1"]).debug is True
    assert _parser().parse_args(["show", "1"]).debug is False
