"""The `helpdesk` command line's arguments (argparse, and `parse_day` for the --from/--to
values; no project imports; daemon/cli.py dispatches).

`ingest_parser` builds only `ingest`, what an MTA's pipe runs; `parser_parts` every other
command; the commands whose own modules add their parsers are passed in (`adders`) or
added after it by daemon.cli, so that building a parser imports none of them.
"""
from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence


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


def _common_options(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--config", metavar="PATH", default=default,
                   help="site config file (default: $HELPDESK_CONFIG, then ./config.toml, then "
                        "/etc/helpdesk/config.toml)")
    p.add_argument("--debug", action="store_true", default=False if default is None else default,
                   help="debug logging and tracebacks for unexpected errors")


def _top() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, "argparse._SubParsersAction"]:
    p = argparse.ArgumentParser(prog="helpdesk", description="helpdeskd: an email-driven IT service desk")
    _common_options(p, default=None)
    # the same options after the command; SUPPRESS keeps a value given before the command
    common = argparse.ArgumentParser(add_help=False)
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


def ingest_parser() -> argparse.ArgumentParser:
    """Only `ingest`: what an MTA's pipe runs, without building (importing) the rest."""
    p, common, sub = _top()
    _add_ingest(sub, common)
    return p


def parser_parts(adders: Sequence[Callable] = ()) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser,
                                                          "argparse._SubParsersAction"]:
    """Every command but the ones whose modules add their own (report, oauth2: daemon.cli adds them)."""
    p, common, sub = _top()
    sub.add_parser("serve", parents=[common], help="run the daemon in the foreground")
    sub.add_parser("worker", parents=[common], help="run only the task-queue worker (scale-out)")
    _add_ingest(sub, common)
    sub.add_parser("check", parents=[common], help="validate config, rules and templates")
    st = sub.add_parser("status", parents=[common], help="is the daemon healthy: accounts, spool, quarantine")
    st.add_argument("--json", action="store_true")
    t = sub.add_parser("tickets", parents=[common], help="list tickets, newest first")
    t.add_argument("--json", action="store_true")
    t.add_argument("--status")
    t.add_argument("--queue")
    t.add_argument("--type")
    t.add_argument("--limit", type=int, default=None)
    s = sub.add_parser("show", parents=[common], help="one ticket with its messages and events")
    s.add_argument("ref", metavar="REF")
    s.add_argument("--json", action="store_true")
    s.add_argument("--full", action="store_true",
                   help="each message's original text as received (unstripped) and its stored raw mail's sha256")
    q = sub.add_parser("quarantine", parents=[common], help="messages that could not be processed")
    q.add_argument("action", nargs="?", default="list", choices=["list", "show", "release"])
    q.add_argument("id", nargs="?", type=int)
    q.add_argument("--json", action="store_true")
    q.add_argument("--raw", action="store_true", help="with show: print the raw message")
    for add in adders:                      # rules, update/reply: their modules add them
        add(sub, common)
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
    return p, common, sub
