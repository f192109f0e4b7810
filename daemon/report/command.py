"""`helpdesk report [--from DATE] [--to DATE] [--json] [--html FILE]` (command)."""
from __future__ import annotations

from datetime import timedelta

from daemon.cli_args import parse_day
from daemon.clock import build_clock
from daemon.errors import HelpdeskError
from daemon.report.collect import collect
from daemon.report.page import render_html
from daemon.report.render import render_json, render_text
from daemon.rules.live import LiveRules
from daemon.settings import defaults_of
from daemon.templates import template_names
from store.db import create_schema, make_engine


def cmd_report(cfg, args, out, usage=HelpdeskError) -> int:
    """Print the report (text or --json) and write --html; 0."""
    now = build_clock(cfg).now().replace(microsecond=0)
    end = parse_day(args.end, "--to", usage, end=True) or now
    start = parse_day(args.start, "--from", usage) or end - timedelta(days=28)
    if start >= end:
        raise usage(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    rules = LiveRules(cfg.paths.rules, known_templates=template_names(cfg.paths.templates), defaults=defaults_of(cfg))
    engine = make_engine(cfg.database_url)
    try:
        create_schema(engine)
        figures = collect(engine, rules.sla, start, end, now)
    finally:
        engine.dispose()
    prefix = cfg.helpdesk.ticket_prefix
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(render_html(figures, title=f"{cfg.helpdesk.name}: continual improvement report", prefix=prefix))
        except OSError as exc:
            raise HelpdeskError(f"--html {args.html}: {exc.strerror or exc}") from exc
    out((render_json(figures, prefix) if args.json else render_text(figures)).rstrip("\n"))
    return 0

