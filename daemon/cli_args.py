"""The `helpdesk` command line's arguments (argparse, and `parse_day` for the --from/--to
values; no project imports; daemon/cli.py dispatches).

`alone_parser` builds only one of the commands that must start fast (ALONE: `ingest`, what
an MTA's pipe runs, `tickets`, `show`); `parser_parts` every command. Every command's arguments are here, those of the commands with their own module
(rules, update/reply, report, oauth2) too, so that building the parser (and `--help`)
imports none of the modules that run them.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Callable


def parse_day(text: str | None, option: str, usage: Callable[[str], Exception], *,
              end: bool = False) -> datetime | None:
    """`--from`/`--to` (`sla report`, `report`): a date (a whole UTC day; as an end, the day
    is included) or an ISO time; None when not given. A bad one raises `usage(text)` (the
    command line's usage error: exit 2)."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise usage(f"{option}: not an ISO date: {text!r} (e.g. 2026-01-31)") from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return dt + timedelta(days=1) if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()) else dt


def _columns() -> int:
    """shutil.get_terminal_size().columns (COLUMNS, else the terminal on stdout, else 80),
    without importing shutil and the compression modules it imports, as argparse's
    HelpFormatter does for every argument added (about 2 ms of each start; issue 16)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's HelpFormatter, its default width from `_columns` (the same width)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser formatting with `_Formatter` (its subparsers are _Parsers too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _common_options(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--config", metavar="PATH", default=default,
                   help="site config file (default: $HELPDESK_CONFIG, then ./config.toml, then "
                        "/etc/helpdesk/config.toml)")
    p.add_argument("--debug", action="store_true", default=False if default is None else default,
                   help="debug logging and tracebacks for unexpected errors")


def _top() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, "argparse._SubParsersAction"]:
    p = _Parser(prog="helpdesk", description="helpdeskd: an email-driven IT service desk")
    _common_options(p, default=None)
    # the same options after the command; SUPPRESS keeps a value given before the command
    common = _Parser(add_help=False)
    _common_options(common, default=argparse.SUPPRESS)
    return p, common, p.add_subparsers(dest="command", required=True, metavar="COMMAND")


def _add_ingest(sub, common) -> None:
    ing = sub.add_parser("ingest", parents=[common], help="take mail from .eml, mbox, Maildir or stdin")
    ing.add_argument("paths", nargs="*", metavar="PATH")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("--no-mail", action="store_true",
                     help="send no acknowledgements or notifications (importing an archive)")
    ing.add_argument("--sender", metavar="ADDR", help="envelope sender, as an MTA passes ${sender} ('' or "
                                                      "MAILER-DAEMON: the null sender)")
    ing.add_argument("--recipient", metavar="ADDR", action="extend", nargs="+", default=[],
                     help="envelope recipient(s), as an MTA passes ${recipient}; repeatable")


def _add_tickets(sub, common) -> None:
    t = sub.add_parser("tickets", parents=[common], help="list tickets, newest first")
    t.add_argument("--json", action="store_true")
    t.add_argument("--status")
    t.add_argument("--queue")
    t.add_argument("--type")
    t.add_argument("--limit", type=int, default=None)


def _add_show(sub, common) -> None:
    s = sub.add_parser("show", parents=[common], help="one ticket with its messages and events")
    s.add_argument("ref", metavar="REF")
    s.add_argument("--json", action="store_true")
    s.add_argument("--full", action="store_true",
                   help="each message's original text as received (unstripped) and its stored raw mail's sha256")


# the commands that must start fast get a parser of their own command only (issues 13, 16)
ALONE = {"ingest": _add_ingest, "tickets": _add_tickets, "show": _add_show}


def command_of(argv: list[str]) -> str | None:
    """The command word of `argv`, skipping the options that may come before it."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--config":
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def alone_parser(command: str) -> argparse.ArgumentParser:
    """A parser of only `command` (one of ALONE): its arguments, help and errors are those of
    the full parser, built in a fraction of the time. A command line whose command word is
    not in ALONE gets the full parser (parser_parts), so "no such command" reads as ever."""
    p, common, sub = _top()
    ALONE[command](sub, common)
    return p


def _add_desk(sub, common) -> None:
    """`update` and `reply` (daemon.desk_cli runs them)."""
    u = sub.add_parser("update", parents=[common], help="change a ticket as an agent would by mail")
    u.add_argument("ref", metavar="REF")
    u.add_argument("--as", dest="agent", metavar="AGENT", required=True, help="the registered agent acting")
    u.add_argument("--status")
    u.add_argument("--priority", metavar="P1..P4")
    u.add_argument("--assign", metavar="AGENT|none")
    u.add_argument("--queue")
    u.add_argument("--type")
    u.add_argument("--tag", action="append", metavar="TAG", help="add a tag (-TAG removes it); repeatable")
    u.add_argument("--note", metavar="TEXT", help="an internal note for the colleagues on the ticket")
    u.add_argument("--problem", metavar="REF", help="link this incident to problem REF")
    u.add_argument("--workaround", metavar="TEXT", help="set this problem's workaround (known error)")
    u.add_argument("--json", action="store_true", help="print the ticket")
    r = sub.add_parser("reply", parents=[common], help="send an agent's answer to the requester")
    r.add_argument("ref", metavar="REF")
    r.add_argument("--as", dest="agent", metavar="AGENT", required=True, help="the registered agent answering")
    text = r.add_mutually_exclusive_group()
    text.add_argument("-m", "--message", metavar="TEXT")
    text.add_argument("--file", metavar="F", help="the answer's text from a file (- for stdin)")
    r.add_argument("--macro", metavar="NAME", help="answer with a macro (rules/macros.yaml)")
    r.add_argument("--resolve", action="store_true", help="and resolve the ticket")
    r.add_argument("--json", action="store_true", help="print the ticket")


def _add_report(sub, common) -> None:
    """`report` (daemon.report.command runs it)."""
    rep = sub.add_parser("report", parents=[common], help="continual improvement report: volume, times, SLA, "
                                                           "backlog, reopen rate, satisfaction, problems, trends")
    rep.add_argument("--from", dest="start", metavar="DATE", help="first day (or ISO time), UTC; default 28 days "
                                                                   "before --to")
    rep.add_argument("--to", dest="end", metavar="DATE", help="last day, included (or an ISO time, excluded); "
                                                               "default now")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--html", metavar="FILE", help="also write it as one self-contained HTML page (charts in "
                                                    "inline SVG, no scripts)")


def add_rules_parser(subparsers, common_parent) -> None:
    """`rules test` and `rules replay` (daemon.rules.tester, daemon.rules_replay run them)."""
    r = subparsers.add_parser("rules", parents=[common_parent], help="try the routing rules on mail")
    rsub = r.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    t = rsub.add_parser("test", parents=[common_parent], help="show how mail would be routed, and why")
    t.add_argument("message", nargs="?", metavar="MESSAGE.eml")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.add_argument("--corpus", metavar="DIR", help="route every *.eml in DIR and compare with --expect")
    t.add_argument("--expect", metavar="FILE", help="YAML/JSON: file name -> expected type/queue/priority/tags")
    t.add_argument("--rules", metavar="DIR", help="rules directory to test (default: [paths] rules)")
    t.add_argument("--at", metavar="TIME", help="route as if at this ISO time (default: the mail's Date)")
    t.add_argument("--reply", action="store_true", help="route as a reply on an existing ticket")
    t.add_argument("--rcpt", action="append", default=[], metavar="ADDR", help="envelope recipient (repeatable)")
    rp = rsub.add_parser("replay", parents=[common_parent], help="route stored mail by the live and candidate "
                                                                  "rules; list what would differ (changes nothing)")
    rp.add_argument("--rules", metavar="DIR", required=True, help="the candidate rules directory")
    rp.add_argument("--since", metavar="DATE", help="tickets created since (default: 30 days ago)")
    rp.add_argument("--json", action="store_true", help="machine-readable output (CI)")


def _add_oauth2(sub, common) -> None:
    """`helpdesk oauth2 login ACCOUNT` (daemon.oauth2_login runs it)."""
    o2 = sub.add_parser("oauth2", parents=[common], help="OAuth 2.0 for mailboxes").add_subparsers(
        dest="oauth2_command", required=True, metavar="COMMAND")
    login = o2.add_parser("login", parents=[common], help="device-code sign-in for an account with auth = "
                          "\"oauth2\": prints a URL and a code, waits, stores the refresh token")
    login.add_argument("account", metavar="ACCOUNT", help="an [[imap]] account name, or outbound")


def parser_parts() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, "argparse._SubParsersAction"]:
    """Every command (the parser `helpdesk` runs but for the ALONE ones: alone_parser)."""
    p, common, sub = _top()
    sub.add_parser("serve", parents=[common], help="run the daemon in the foreground")
    sub.add_parser("worker", parents=[common], help="run only the task-queue worker (scale-out)")
    _add_ingest(sub, common)
    sub.add_parser("check", parents=[common], help="validate config, rules and templates")
    st = sub.add_parser("status", parents=[common], help="is the daemon healthy: accounts, spool, quarantine")
    st.add_argument("--json", action="store_true")
    _add_tickets(sub, common)
    _add_show(sub, common)
    q = sub.add_parser("quarantine", parents=[common], help="messages that could not be processed")
    q.add_argument("action", nargs="?", default="list", choices=["list", "show", "release"])
    q.add_argument("id", nargs="?", type=int)
    q.add_argument("--json", action="store_true")
    q.add_argument("--raw", action="store_true", help="with show: print the raw message")
    add_rules_parser(sub, common)
    _add_desk(sub, common)
    se = sub.add_parser("search", parents=[common], help="tickets whose subject or messages match, newest first")
    se.add_argument("query", metavar="QUERY")
    se.add_argument("--json", action="store_true")
    se.add_argument("--limit", type=int, default=None)
    sub.add_parser("agents", parents=[common], help="every agent: queues, roles, open tickets assigned").add_argument(
        "--json", action="store_true")
    e = sub.add_parser("export", parents=[common], help="every ticket as one JSON array")
    e.add_argument("--since", metavar="DATE")
    e.add_argument("--raw", action="store_true",
                   help="a backup: with each message's raw bytes (base64) and every stored row, for 'import'")
    imp = sub.add_parser("import", parents=[common], help="restore an 'export --raw' file into an empty database")
    imp.add_argument("file", metavar="FILE", help="the export (- for standard input)")
    ini = sub.add_parser("init", parents=[common], help="make a site directory: config.toml, rules/, templates/")
    ini.add_argument("dir", metavar="DIR")
    ini.add_argument("--force", action="store_true", help="overwrite existing files with the shipped ones")
    ini.add_argument("--state-dir", default="var", metavar="PATH",
                     help="state_dir written into DIR/config.toml (default: var, inside DIR)")
    db = sub.add_parser("db", parents=[common], help="the database schema (migrations)").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND")
    db.add_parser("upgrade", parents=[common], help="apply the schema migrations up to the newest")
    cur = db.add_parser("current", parents=[common], help="the database's schema revision and the newest "
                                                           "(exit 1 when behind)")
    cur.add_argument("--json", action="store_true")
    sla = sub.add_parser("sla", parents=[common], help="SLA attainment").add_subparsers(
        dest="sla_command", required=True, metavar="COMMAND")
    rep = sla.add_parser("report", parents=[common], help="SLA attainment by queue, priority and policy of the "
                                                           "tickets created in a period (default: the last 30 days)")
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--from", dest="start", metavar="DATE", help="first day (or ISO time), UTC; default 30 days "
                                                                   "before --to")
    rep.add_argument("--to", dest="end", metavar="DATE", help="last day, included (or an ISO time, excluded); "
                                                               "default now")
    rep.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    _add_report(sub, common)
    _add_oauth2(sub, common)
    return p, common, sub
