"""The `helpdesk` command line (also `python -m daemon`).

Exit status: 0 success, 1 error (one clear line on stderr), 2 usage, 75 temporary failure.
No command prints a traceback for bad input; `--debug` does for unexpected errors.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from daemon.cli_args import ALONE, alone_parser, command_of, parse_day, parser_parts
from daemon.errors import ConfigError, HelpdeskError, NotFound, RulesError, SpoolError, StoreUnavailable

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.config_read import ConfigValues

# logging, the clock, views and everything heavy are imported where used: `helpdesk ingest`
# from an MTA's pipe and `tickets`/`show` must start fast (daemon.handoff, store.quick_read;
# issue 16). These LIGHT commands get the checked config values (daemon.config_read), not
# the Config dataclasses, and set up logging only when they leave the light path (`_full`).
EX_OK, EX_ERROR, EX_USAGE, EX_TEMPFAIL = 0, 1, 2, 75
LIGHT = frozenset({"tickets", "show", "ingest"})


class UsageError(HelpdeskError):
    """Raised for a command line that names something malformed (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    return parser_parts()[0]


def parse_ref(text: str, prefix: str) -> int:
    m = re.fullmatch(rf"(?:{re.escape(prefix)}-)?(\d+)", text.strip(), re.IGNORECASE)
    if not m:
        raise UsageError(f"not a ticket reference: {text!r} (expected 42 or {prefix}-42)")
    return int(m.group(1))


def _setup_logging(cfg: Config | None, debug: bool, *, errors_only: bool = False) -> None:
    import logging
    level = logging.DEBUG if debug else getattr(logging, (cfg.log.level if cfg else "info").upper())
    if errors_only and not debug:                 # an MTA's pipe: its delivery status shows only errors
        level = max(level, logging.ERROR)
    from daemon.logfmt import install
    install(level, cfg.log.format if cfg else "text")
    if not debug:
        for noisy in ("mail.log", "mailparser", "mailparser.core", "mailparser.utils", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _full(values: ConfigValues | Config, args, *, errors_only: bool = False) -> Config:
    """A LIGHT command leaving the light path: logging set up (once), the whole Config built."""
    from daemon.config import build_config
    cfg = build_config(values)
    _setup_logging(cfg, args.debug, errors_only=errors_only)
    return cfg


def _build_clock(cfg: Config):
    from daemon.clock import build_clock
    return build_clock(cfg)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


# --------------------------------------------------------------------------- commands
def _shared_key(cfg: Config) -> None:
    """serve, worker, ingest (when it runs the pipeline itself), update, reply and quarantine
    release sign what they send: on a shared database they refuse a node without the shared key."""
    from daemon.config import key_location
    from daemon.secrets import shared_key_problem
    problem = shared_key_problem(cfg.database_url, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    if problem:
        raise ConfigError(f"{key_location(cfg, 'database.url')}: {problem}")


def _long_running() -> None:
    """serve and worker run for months: two malloc arenas (before the first thread; daemon.heap).
    huey comes without the redis and psycopg clients anyway (daemon.huey_lean)."""
    from daemon import heap
    heap.limit_arenas()


def cmd_serve(cfg: Config, args) -> int:
    _shared_key(cfg)
    _long_running()
    from daemon.app import build_app, serve
    return serve(build_app(cfg))


def cmd_ingest(cfg: ConfigValues, args) -> int:
    piped = not args.paths or args.paths == ["-"]
    if piped:                                     # an MTA's pipe: hand off to a running daemon
        from daemon.handoff import hand_off, replay_stdin
        data = sys.stdin.buffer.read()
        if hand_off(cfg, data, args.sender, args.recipient) is not None:
            if not data:
                sys.stderr.write("helpdesk: no message on standard input\n")
                return EX_ERROR
            return EX_OK
        replay_stdin(data)
    return _ingest_fully(_full(cfg, args, errors_only=piped), args)


def _ingest_fully(cfg: Config, args) -> int:
    from daemon.app import build_app
    from daemon.settings import worker_settings
    from daemon.intake.ingest import ingest
    from daemon.intake.parallel import ParseAhead
    _shared_key(cfg)             # it signs what it sends as serve does (a hand-off above needs no key)
    # parsing helpers are forked first: before any database connection or thread exists
    helpers = ParseAhead.for_import(args.paths, worker_settings(cfg).limits, cfg.worker.ingest_processes,
                                    cfg.limits.parse_seconds)
    try:
        app = build_app(cfg, outbound=not args.no_mail)
        app.spool.recover()
        # mail planned here is queued; the daemon's consumer (or `helpdesk worker`) sends it
        return ingest(app, args.paths, progress=not args.quiet and sys.stderr.isatty(), helpers=helpers,
                      archive=args.no_mail, sender=args.sender, recipients=args.recipient)
    finally:
        if helpers is not None:
            helpers.close()


def cmd_check(cfg: Config, args) -> int:
    from daemon.check import check
    problems, summary = check(cfg)
    for line in problems:
        sys.stderr.write(line + "\n")
    if problems:
        return EX_ERROR
    _out(summary)
    return EX_OK


def cmd_status(cfg: Config, args) -> int:
    """Exit 0 when the daemon runs and nothing is wrong; 1 saying why otherwise."""
    from daemon.health import report, status_text
    snap = report(cfg, _build_clock(cfg).now())
    _out(json.dumps(snap, indent=1, default=str) if args.json else status_text(snap))
    if snap["problems"] and args.json:
        for line in snap["problems"]:
            sys.stderr.write(f"helpdesk: {line}\n")
    return EX_ERROR if snap["problems"] else EX_OK


def _store(cfg: Config):
    from daemon.stores import open_store
    return open_store(cfg)


def _quick(cfg: Config, read):
    """`read(conn)` on the light read path (store.quick_read), or None: take the full path."""
    import sqlite3
    from store import quick_read
    conn = quick_read.open_current(cfg.database_url)
    if conn is None:
        return None
    try:
        return read(conn)
    except sqlite3.Error:
        return None                # the full path says what is wrong, as it always did
    finally:
        conn.close()


def _rules(cfg: Config):
    from daemon.rules.loader import load_rules
    return load_rules(cfg.paths.rules)


def cmd_tickets(cfg: ConfigValues, args) -> int:
    from daemon import views
    if args.status or args.queue or args.type:
        from daemon.filters import check_filters
        problems = check_filters(lambda: _rules(_full(cfg, args)), status=args.status, queue=args.queue,
                                 type=args.type)        # the rules (and the Config) only when a value needs them
        if problems:
            raise UsageError("; ".join(problems))
    filters = {"status": args.status, "queue": args.queue, "type": args.type, "limit": args.limit}
    prefix = cfg.helpdesk.ticket_prefix

    def write(rows) -> bool:                      # streamed: a million tickets in flat memory
        import sqlite3
        pieces = views.json_list_pieces(views.ticket_json(t, prefix) for t in rows) if args.json \
            else (line + "\n" for line in views.tickets_lines(rows, prefix))
        started = False
        try:
            for piece in pieces:
                sys.stdout.write(piece)
                started = True
        except sqlite3.Error as exc:
            if started:                           # half printed: say so, never print it twice
                raise HelpdeskError(f"reading the tickets failed part way: {exc}") from exc
            raise
        if args.json:
            sys.stdout.write("\n")
        return True
    from store.quick_tickets import iter_tickets
    if _quick(cfg, lambda conn: write(iter_tickets(conn, **filters))) is None:
        write(_store(_full(cfg, args)).iter_tickets(**filters))
    return EX_OK


def cmd_show(cfg: ConfigValues, args) -> int:
    from store.quick_read import ticket_exists
    prefix = cfg.helpdesk.ticket_prefix
    ticket_id = parse_ref(args.ref, prefix)
    if _quick(cfg, lambda conn: ticket_exists(conn, ticket_id)) is False:   # the light path knows: no such ticket
        raise NotFound(f"ticket {ticket_id} not found")
    from daemon import views
    from daemon.sla.views import SlaReader, sla_text
    from daemon.itil_views import itil_show
    cfg = _full(cfg, args)
    store = _store(cfg)
    detail = store.ticket_detail(ticket_id)
    sla = SlaReader(cfg, store.engine).show(ticket_id, _build_clock(cfg).now())
    extra, lines = itil_show(store.engine, ticket_id, prefix, detail.ticket.status)   # problem ... approvals
    data = {**views.detail_json(detail, prefix, sla), **extra}
    sla_lines = sla_text(sla) + lines
    if not args.full:
        _out(json.dumps(data, ensure_ascii=False, indent=1) if args.json
             else views.detail_text(detail, prefix, sla_lines))
        return EX_OK
    from daemon import original_view
    from daemon.settings import worker_settings
    raws = store.raw_messages([x.raw_sha256 for x in detail.messages])
    originals = original_view.read_originals(detail, raws, worker_settings(cfg).limits)
    _out(json.dumps(original_view.add_originals(data, detail, originals), ensure_ascii=False, indent=1)
         if args.json else views.detail_text(detail, prefix, sla_lines, original_view.full_bodies(detail, originals)))
    return EX_OK


def cmd_quarantine(cfg: Config, args) -> int:
    from daemon import views
    from daemon.app import build_app
    if args.action != "list" and args.id is None:
        raise UsageError(f"quarantine {args.action} needs an ID")
    if args.action == "list":
        rows = _store(cfg).quarantine_list()
        _out(json.dumps([views.quarantine_json(q) for q in rows], indent=1) if args.json
             else views.quarantine_text(rows))
        return EX_OK
    if args.action == "show":
        row, raw = _store(cfg).quarantine_get(args.id)
        if args.raw:
            sys.stdout.buffer.write(raw)
            return EX_OK
        shown = views.quarantine_json(row)
        _out(json.dumps(shown, indent=1) if args.json else "\n".join(
            f"{k + ':':<12} {v if v is not None else '-'}" for k, v in shown.items())
            + f"\n(helpdesk quarantine show {args.id} --raw prints the message)")
        return EX_OK
    from daemon.intake.ingest import is_archived, release
    _shared_key(cfg)             # a released mail is acknowledged and signed as serve would
    store = _store(cfg)
    try:
        row, raw = store.quarantine_get(args.id)
    finally:
        store.engine.dispose()
    return release(build_app(cfg, outbound=not is_archived(row)), row, raw)


def _since(text: str | None) -> datetime | None:
    return parse_day(text, "--since", UsageError)


def cmd_export(cfg: Config, args) -> int:
    from daemon import views
    from daemon.itil_views import itil_batch
    from daemon.sla.views import SlaReader
    if args.raw:
        from daemon.backup import export_backup
        return export_backup(cfg, _store(cfg), _since(args.since), sys.stdout.write)
    since = _since(args.since)
    prefix = cfg.helpdesk.ticket_prefix
    store = _store(cfg)
    reader, now = SlaReader(cfg, store.engine), _build_clock(cfg).now()
    write = sys.stdout.write
    write("[")
    first = True
    batch: list = []

    from daemon.approval_view import approvals_json
    from store.approvals_store import ApprovalStore
    approvals = ApprovalStore(store.engine)

    def flush() -> None:
        nonlocal first
        extra = itil_batch(store.engine, [(d.ticket.id, d.ticket.type) for d in batch], prefix)   # problem, csat...
        changes = approvals.read_many(d.ticket.id for d in batch)
        for detail, sla in zip(batch, reader.export(batch, now)):
            obj = {**views.detail_json(detail, prefix, sla), **extra.get(detail.ticket.id, {}),
                   "approvals": approvals_json(changes.get(detail.ticket.id), detail.ticket.status)}
            write(("\n" if first else ",\n") + json.dumps(obj, ensure_ascii=False))
            first = False
        batch.clear()
    for detail in store.iter_details(since=since):
        batch.append(detail)
        if len(batch) >= 500:
            flush()
    flush()
    write("\n]\n")
    return EX_OK


def cmd_sla(cfg: Config, args) -> int:
    from daemon.sla.report import render_html, render_json, render_text
    from daemon.sla.views import SlaReader
    now = _build_clock(cfg).now().replace(microsecond=0)
    end = parse_day(args.end, "--to", UsageError, end=True) or now
    start = parse_day(args.start, "--from", UsageError) or end - timedelta(days=30)
    if start >= end:
        raise UsageError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    report = SlaReader(cfg, _store(cfg).engine).report(start, end, now)
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(render_html(report))
        except OSError as exc:
            raise HelpdeskError(f"--html {args.html}: {exc.strerror or exc}") from exc
    _out((render_json(report) if args.json else render_text(report)).rstrip("\n"))
    return EX_OK


def cmd_worker(cfg: Config, args) -> int:
    _shared_key(cfg)
    _long_running()
    from daemon.app import build_app, run_queue_worker
    return run_queue_worker(build_app(cfg))


def cmd_oauth2(cfg: Config, args) -> int:
    from daemon.oauth2_login import device_login, oauth2_accounts
    from daemon.oauth2_store import TokenStore
    accounts = oauth2_accounts(cfg)
    if args.account not in accounts:
        raise UsageError(f"no account {args.account!r} with auth = \"oauth2\" (have: {', '.join(accounts) or 'none'})")
    settings = accounts[args.account]
    device_login(settings, TokenStore(cfg.state_dir, settings.key), out=_out)
    return EX_OK


def cmd_init(args) -> int:
    from daemon.site_init import init_site, next_steps
    from pathlib import Path
    _out(next_steps(init_site(Path(args.dir), force=args.force, state_dir=args.state_dir)))
    return EX_OK


def cmd_db(cfg: Config, args) -> int:
    from daemon.schema_commands import run_db_command
    return run_db_command(cfg, args)


def cmd_import(cfg: Config, args) -> int:
    from daemon.backup import import_backup
    _out(import_backup(cfg, args.file))
    return EX_OK


def cmd_rules(cfg: Config, args) -> int:
    if getattr(args, "rules_command", "test") == "replay":
        from daemon.rules_replay import run_replay
        return run_replay(cfg, args, _since(args.since), _out)
    from daemon.rules.tester import run_rules_command
    return run_rules_command(cfg, args)


def cmd_desk(cfg: Config, args) -> int:
    from daemon.desk_cli import run_command
    _shared_key(cfg)             # its mail carries reply tokens every node must accept
    return run_command(cfg, args, parse_ref, UsageError, _out)


def cmd_agents(cfg: Config, args) -> int:
    from daemon.roster_view import cmd_agents as run
    store = _store(cfg)
    try:
        return run(cfg, args, store, _out)
    finally:
        store.engine.dispose()


def cmd_search(cfg: Config, args) -> int:
    from daemon.search_view import cmd_search as run
    store = _store(cfg)
    try:
        return run(cfg, args, store, _out, UsageError)
    finally:
        store.engine.dispose()


def cmd_report(cfg: Config, args) -> int:
    from daemon.report.command import cmd_report as run
    return run(cfg, args, _out, UsageError)


COMMANDS = {"report": cmd_report, "search": cmd_search, "agents": cmd_agents, "update": cmd_desk, "reply": cmd_desk, "worker": cmd_worker, "rules": cmd_rules, "status": cmd_status, "serve": cmd_serve, "ingest": cmd_ingest, "check": cmd_check, "tickets": cmd_tickets,
            "show": cmd_show, "quarantine": cmd_quarantine, "export": cmd_export, "sla": cmd_sla,
            "oauth2": cmd_oauth2, "db": cmd_db, "import": cmd_import}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    word = command_of(argv)
    args = (alone_parser(word) if word in ALONE else _parser()).parse_args(argv)
    cfg = None
    try:
        if args.command == "init":                 # the one command that needs no config file
            _setup_logging(None, args.debug)
            return cmd_init(args)
        from daemon.config_lookup import find_site_config
        from daemon.config_read import read_config
        try:
            values = read_config(str(find_site_config(args.config)))
        except ConfigError as exc:
            if args.command == "check":
                sys.stderr.write(f"{exc}\n")
                return EX_ERROR
            raise
        if args.command in LIGHT:                 # logging and the Config when they need them (_full)
            return COMMANDS[args.command](values, args)
        from daemon.config import build_config
        cfg = build_config(values)
        _setup_logging(cfg, args.debug)
        return COMMANDS[args.command](cfg, args)
    except UsageError as exc:
        sys.stderr.write(f"helpdesk: {exc}\n")
        return EX_USAGE
    except (StoreUnavailable, SpoolError) as exc:
        sys.stderr.write(f"helpdesk: temporary failure: {exc}\n")
        return EX_TEMPFAIL
    except RulesError as exc:
        for line in exc.problems:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"helpdesk: the rules do not load ({len(exc.problems)} problem(s)); fix them or run "
                         f"'helpdesk check'\n")
        return EX_ERROR
    except NotFound as exc:
        sys.stderr.write(f"helpdesk: {exc}\n")
        return EX_ERROR
    except HelpdeskError as exc:
        sys.stderr.write(f"helpdesk: {exc}\n")
        return EX_ERROR
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            import traceback
            traceback.print_exc()
        sys.stderr.write(f"helpdesk: internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)\n")
        return EX_ERROR
