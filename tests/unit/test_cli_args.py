"""Command-line parsing: global options work before and after the command; --from/--to dates."""
from datetime import datetime, timezone

import pytest

from daemon.cli import _parser
from daemon.cli_args import alone_parser, parse_day, parser_parts


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


ALONE_CASES = [["tickets", "--help"], ["show", "--help"], ["ingest", "--help"], ["--bogus", "tickets"],
               ["tickets", "--limit", "x"], ["show"], ["--config", "a", "show", "HD-1", "--json", "--debug"],
               ["tickets", "--status", "new", "extra"], ["show", "1", "2"], ["--debug", "tickets", "--json"],
               ["ingest", "-", "--sender", "a", "--recipient", "b", "c"], ["tickets", "--limit", "3", "--config", "b"]]


@pytest.mark.parametrize("argv", ALONE_CASES, ids=" ".join)
def test_a_command_parsed_alone_parses_helps_and_fails_as_in_the_full_parser(argv, capsys):
    """tickets, show and ingest build only their own parser (issue 16): same values, same
    help text, same error messages and exit status as the parser of every command."""
    from daemon.cli_args import ALONE, alone_parser, command_of, parser_parts
    assert command_of(argv) in ALONE
    seen = []
    for build in (lambda: parser_parts()[0], lambda: alone_parser(command_of(argv))):
        try:
            got = vars(build().parse_args(argv))
        except SystemExit as exc:
            got = ("exit", exc.code)
        seen.append((got, *capsys.readouterr()))
    assert seen[0] == seen[1]
    assert seen[0][0] != ("exit", 0) or "usage: helpdesk " in seen[0][1]      # --help printed something


@pytest.mark.parametrize("columns", [None, "50", "200", "0", "junk"])
def test_the_help_is_as_wide_as_argparse_makes_it(monkeypatch, columns):
    """cli_args formats help without importing shutil, at the width argparse's own takes."""
    import argparse

    from daemon.cli_args import _Formatter
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _Formatter("helpdesk")._width == argparse.HelpFormatter("helpdesk")._width
    full, alone = parser_parts()[0], alone_parser("tickets")
    assert full.format_help() == _plain(full).format_help()
    assert alone.format_help() == _plain(alone).format_help()


def _plain(parser):
    """The same parser formatting with argparse's HelpFormatter."""
    import copy
    import argparse
    plain = copy.copy(parser)
    plain.formatter_class = argparse.HelpFormatter
    return plain
