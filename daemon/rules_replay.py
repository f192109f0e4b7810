"""`helpdesk rules replay --rules DIR [--since DATE] [--json]`: a rules change reviewed on real mail.

The stored first message of every ticket created since DATE (default: 30 days ago) is
parsed again from its raw bytes and routed twice - by the live rules ([paths] rules) and by
the candidate rules in DIR - at the time it arrived, with its envelope. Nothing is written.
Each ticket whose type, queue, priority, assignee or tags would differ is listed with the
rules that decided before and after; a summary table counts the changes per field and per
queue move. `diff_routing` and the renderers are pure; `replay` reads the store.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from sqlmodel import Session, select

from daemon.clock import aware
from daemon.model import Envelope, Routing, ThreadDecision
from daemon.pipeline.classify import Defaults, classify
from daemon.pipeline.parse import parse
from store import tables as m
from daemon.app import open_store
from daemon.settings import defaults_of
from daemon.rules.loader import load_rules
from daemon.templates import template_names

FIELDS = ("type", "queue", "priority", "assignee", "tags")
NEW = ThreadDecision("new", None, "rules replay: routed as the ticket's first message")


@dataclass(frozen=True)
class Change:
    """One ticket that would be routed differently: per field (before, after), and the
    rule hits of each routing."""

    ticket_id: int
    subject: str
    fields: dict
    before_hits: tuple[str, ...]
    after_hits: tuple[str, ...]


@dataclass
class Report:
    """The whole replay: how many were routed, the changes, the failures, the speed."""

    since: datetime
    live_version: str
    candidate_version: str
    routed: int = 0
    changes: list[Change] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.routed / self.seconds if self.seconds > 0 else 0.0


def _value(r: Routing, name: str):
    return tuple(sorted(r.tags)) if name == "tags" else getattr(r, name)


def diff_routing(before: Routing, after: Routing) -> dict:
    """The fields that differ: name -> (before, after)."""
    return {f: (_value(before, f), _value(after, f)) for f in FIELDS if _value(before, f) != _value(after, f)}


def first_messages(s: Session, since: datetime) -> Iterator[tuple[int, str, bytes, str]]:
    """(ticket id, subject, raw bytes, envelope JSON) of each ticket's first message."""
    tickets = s.exec(select(m.Ticket.id, m.Ticket.subject).where(m.Ticket.created_at >= since)
                     .order_by(m.Ticket.id)).all()
    for tid, subject in tickets:
        row = s.exec(select(m.Message.raw_sha256, m.Message.envelope).where(m.Message.ticket_id == tid)
                     .order_by(m.Message.id).limit(1)).first()
        if row is None:
            continue
        raw = s.get(m.RawMessage, row[0])
        if raw is not None:
            yield tid, subject, raw.data, row[1]


def _envelope(text: str) -> Envelope:
    try:
        data = json.loads(text)
        data["rcpt_to"] = tuple(data.get("rcpt_to") or ())
        return Envelope(**data)
    except (TypeError, ValueError):
        return Envelope(None)


def replay(engine, live, candidate, defaults: Defaults, since: datetime) -> Report:
    """Route every first message since `since` by both rule sets (see module docstring)."""
    report = Report(since, live.version, candidate.version)
    start = time.perf_counter()
    with Session(engine) as s:
        for tid, subject, raw, env_text in first_messages(s, since):
            envelope = _envelope(env_text)
            try:
                msg = parse(raw, envelope_mail_from=envelope.mail_from)
                at = _arrival(envelope, msg)
                before = classify(msg, NEW, live, defaults, now=at, envelope_rcpts=envelope.rcpt_to)
                after = classify(msg, NEW, candidate, defaults, now=at, envelope_rcpts=envelope.rcpt_to)
            except Exception as exc:           # noqa: BLE001 - one bad stored mail is named, not fatal
                report.failed.append((tid, f"{exc.__class__.__name__}: {exc}"[:200]))
                continue
            report.routed += 1
            fields = diff_routing(before, after)
            if fields:
                report.changes.append(Change(tid, subject, fields, before.hits, after.hits))
    report.seconds = time.perf_counter() - start
    return report


def _arrival(envelope: Envelope, msg) -> datetime:
    try:
        return aware(datetime.fromisoformat(envelope.received_at))
    except (TypeError, ValueError):
        return msg.date or datetime.now(timezone.utc)


# --------------------------------------------------------------------------- output
def _show(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "[]"
    return "-" if value is None else str(value)


def _decided(hits: tuple[str, ...]) -> str:
    named = [h for h in hits if not h.startswith("default:")]
    return "; ".join(named) if named else "defaults only"


def report_text(r: Report, prefix: str) -> str:
    """A summary table, then each changed ticket with the rules before and after."""
    per_field = Counter(f for c in r.changes for f in c.fields)
    moves = Counter(c.fields["queue"] for c in r.changes if "queue" in c.fields)
    lines = [f"rules replay: {r.routed} ticket(s) since {r.since:%Y-%m-%d}, live {r.live_version} -> "
             f"candidate {r.candidate_version}",
             f"{len(r.changes)} would be routed differently ({100.0 * len(r.changes) / r.routed if r.routed else 0:.1f} %)"
             + (f"; {len(r.failed)} could not be routed" if r.failed else ""), ""]
    lines.append(f"  {'field':<10} {'changed':>7}")
    lines += [f"  {f:<10} {per_field.get(f, 0):>7}" for f in FIELDS]
    if moves:
        lines += ["", f"  {'queue move':<30} {'tickets':>7}"]
        lines += [f"  {a + ' -> ' + b:<30} {n:>7}" for (a, b), n in moves.most_common()]
    for c in r.changes:
        lines += ["", f"{prefix}-{c.ticket_id}  {c.subject[:70]}"]
        lines += [f"    {f:<9} {_show(a)} -> {_show(b)}" for f, (a, b) in c.fields.items()]
        lines += [f"    before: {_decided(c.before_hits)}", f"    after:  {_decided(c.after_hits)}"]
    for tid, why in r.failed:
        lines.append(f"{prefix}-{tid}  not routed: {why}")
    return "\n".join(lines)


def report_json(r: Report, prefix: str) -> str:
    return json.dumps({
        "since": r.since.isoformat(), "live_version": r.live_version, "candidate_version": r.candidate_version,
        "routed": r.routed, "changed": len(r.changes),
        "summary": {f: sum(1 for c in r.changes if f in c.fields) for f in FIELDS},
        "changes": [{"id": c.ticket_id, "ref": f"{prefix}-{c.ticket_id}", "subject": c.subject,
                     "fields": {f: {"before": list(a) if isinstance(a, tuple) else a,
                                    "after": list(b) if isinstance(b, tuple) else b} for f, (a, b) in c.fields.items()},
                     "before_hits": list(c.before_hits), "after_hits": list(c.after_hits)} for c in r.changes],
        "failed": [{"id": t, "error": e} for t, e in r.failed]}, ensure_ascii=False, indent=1)


def run_replay(cfg, args, since: datetime | None, out) -> int:
    """`helpdesk rules replay`: exit 0 (whatever differs: review, not a test), 1 when the
    candidate rules do not load (RulesError, reported by the CLI)."""
    defaults, known = defaults_of(cfg), template_names(cfg.paths.templates)
    live = load_rules(cfg.paths.rules, known_templates=known, defaults=defaults)
    candidate = load_rules(Path(args.rules), known_templates=known, defaults=defaults)
    store = open_store(cfg)
    try:
        report = replay(store.engine, live, candidate, defaults,
                        since or datetime.now(timezone.utc) - timedelta(days=30))
    finally:
        store.engine.dispose()
    prefix = cfg.helpdesk.ticket_prefix
    out(report_json(report, prefix) if args.json else report_text(report, prefix))
    return 0

