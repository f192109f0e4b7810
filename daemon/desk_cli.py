"""`helpdesk update` and `helpdesk reply`: an agent works a ticket from the command line.

There is one behaviour, the mail path's. The command line writes the mail the agent would
have written - the command lines (`#status pending`, `#assign me`, ...) then the text - to
the agent's own signed reply address for the ticket, and hands it to the spool worker's
`MessagePath` inside one write transaction: the agent desk (daemon.agents) validates the
commands, `WriteTx.record_agent` writes message, commands and events, and the same mail
planning (daemon.agent_notices, the resolve notice, the SLA re-plan through daemon.outbound)
runs. Only the sender authentication differs: a person at this machine's shell, who can
read the database anyway, is taken as the agent `--as` names (the evidence says so).

Before anything is written the agent and the commands are checked with the live rules: an
unknown agent or one without rights on the ticket is refused (exit 1, naming why), a bad
value (a queue that does not exist) is a usage error (exit 2) naming the valid ones.
"""
from __future__ import annotations

import getpass
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr

from daemon import tokens
from daemon.agents import Prelude
from daemon.errors import HelpdeskError, NotFound, StoreUnavailable
from daemon.identity import Auth
from daemon.message_path import Entry, StageFailed
from daemon.macros import context_of, expand
from daemon.model import Envelope
from daemon.pipeline import agent as plan
from daemon.pipeline.commands import Vocabulary, parse_commands, validate
from daemon.pipeline.parse import parse
import sys
import json
from daemon import views
from daemon.itil_views import itil_show
from daemon.app import build_app
from daemon.sla.views import SlaReader, sla_text
from store.approvals_store import ApprovalStore, status_refusal

log = logging.getLogger(__name__)


class Refused(HelpdeskError):
    """The agent `--as` names may not do this (unknown, or no rights on the ticket): exit 1."""


class BadValue(HelpdeskError):
    """A value given on the command line is not one the rules know: exit 2."""


@dataclass(frozen=True)
class Act:
    """What the agent asks for: command lines (without `#`), the text, and whether the
    text is an internal note rather than an answer to the requester."""

    ticket_id: int
    agent: str
    commands: tuple[str, ...] = ()
    text: str = ""
    note: bool = False
    via: str = "update"


def update_commands(args) -> tuple[str, ...]:
    """The command lines `helpdesk update` options stand for."""
    out: list[str] = []
    for name in ("status", "priority", "queue", "type"):
        value = getattr(args, name, None)
        if value:
            out.append(f"{name} {value}")
    if getattr(args, "assign", None):
        out.append(f"assign {args.assign}")
    out += [f"tag {t}" for t in getattr(args, "tag", None) or ()]
    for name in ("problem", "workaround"):            # problem management (daemon.problems)
        value = getattr(args, name, None)
        if value:
            out.append(f"{name} {' '.join(value.split())}")
    return tuple(out)


def compose(act: Act, agent, address: str, token: str, subject: str, prefix: str, now: datetime) -> bytes:
    """The agent's mail for `act`, as their mail client would send it to their reply address."""
    lines = [f"#{c}" for c in act.commands] + (["#note"] if act.note else [])
    body = "\n".join(lines + ([""] if lines and act.text else []) + ([act.text.strip()] if act.text else []))
    domain = address.rpartition("@")[2]
    headers = [("From", formataddr((agent.name, agent.email))), ("To", tokens.reply_address(address, token)),
               ("Subject", f"Re: [{prefix}-{act.ticket_id}] {subject}"), ("Date", format_datetime(now)),
               ("Message-ID", f"<cli.{uuid.uuid4().hex}@{domain}>"),
               ("X-Helpdesk-Via", f"helpdesk {act.via} --as {agent.email} (local user {_user()})"),
               ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Transfer-Encoding", "8bit")]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n").encode()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def perform(app, act: Act):
    """Check `act` against the live rules, then carry it out as the agent's mail would be
    (see module docstring). Returns the worker's save result."""
    rules, desk, mail = app.rules.current, app.mail.agents.desk, app.mail
    roster = plan.roster_of(rules.queues)
    agent = roster.get(act.agent.strip().lower())
    if agent is None:
        raise Refused(f"--as {act.agent}: not a registered agent (rules/queues.yaml); agents: "
                      f"{', '.join(sorted(roster)) or 'none'}")
    with app.store.write() as tx:
        ticket = tx.agent_reads().state(act.ticket_id)
    if ticket is None:
        raise NotFound(f"ticket {act.ticket_id} not found")
    if not plan.has_rights(agent, ticket, rules.queues):
        raise Refused(f"--as {agent.email}: not an agent of queue {ticket.queue} nor the assignee of "
                      f"{desk.prefix}-{ticket.id}")
    cmds = _check_commands(act, agent, ticket, rules, roster, desk.prefix, mail.agents.macros)
    _check_change(app, ticket, cmds, desk.prefix)
    now = app.clock()
    token = mail.agents.notices.reply_token(ticket.id, agent.email)
    raw = compose(act, agent, desk.address, token, ticket.subject, desk.prefix, now)
    return _run(app, raw, agent, roster, now)


def _check_commands(act: Act, agent, ticket, rules, roster, prefix: str, macros):
    parsed = parse_commands("\n".join(f"#{c}" for c in act.commands))
    vocab = Vocabulary(frozenset(rules.queues), frozenset(rules.types), frozenset(rules.tags), frozenset(roster),
                       tuple(rules.matrix.levels), prefix)
    parsed, unknown = expand(parsed, macros(), context_of(ticket, agent, prefix)) if macros else (parsed, ())
    cmds = validate(parsed, vocab, sender=agent.email, ticket_id=act.ticket_id)
    refused = unknown + cmds.refused
    if refused:
        raise BadValue("; ".join(f"{r.line}: {r.reason}" for r in refused))
    return cmds


def _check_change(app, ticket, cmds, prefix: str) -> None:
    """A change is resolved or closed only as its approval allows (store.approvals_store.
    status_refusal, the rule the mail path applies): refused before anything is written."""
    status = cmds.status()
    kind = next((c.value for c in reversed(cmds.commands) if c.name == "type"), ticket.type)
    if status is None or kind != "change":
        return
    row = ApprovalStore(app.store.engine).read(ticket.id)
    why = status_refusal(kind, row.state if row else None, status, f"{prefix}-{ticket.id}")
    if why:
        raise Refused(f"not carried out: {why}")


def _run(app, raw: bytes, agent, roster, now: datetime):
    """The worker's per-message path with the command line's prelude."""
    worker, desk = app.worker, app.mail.agents
    envelope = Envelope(agent.email, (), "cli", f"cli:{_user()}", now.isoformat())
    msg = app.mail.outbound.inspect(parse(raw, envelope_mail_from=agent.email), envelope)
    claim = plan.claim_of(msg, envelope, roster, desk.desk.address)
    check = tokens.check_reply_token(desk.ring, claim.details[0], now.date()) if claim.details else None
    auth = Auth("pass", agent.email, "cli", (f"command line, local user {_user()}, as {agent.email}",))
    entry = Entry(None, raw, envelope, msg=msg, pre=Prelude(msg.text, roster, claim, check, auth))
    for attempt in range(3):                        # a ticket found late and held elsewhere: again
        try:
            with app.store.write() as tx:
                worker.path.lock(tx, [entry])       # the one lock order, as the spool worker (store.writing)
                done = worker.path.store_one(tx, entry)
                tx.commit()
            break
        except StageFailed as exc:                  # the cause, as `Worker.process` raises it
            raise exc.cause from exc
        except StoreUnavailable:
            if attempt == 2:
                raise
    result = done.result
    if result is not None and result.outcome != "duplicate":
        app.mail.outbound.after_commit(result.ticket_id, done.outbox_ids, done.alerts)
    log.info("ticket=%s %s by %s from the command line: %s", result.ticket_id if result else "-",
             "recorded" if result else "-", agent.email, result.outcome if result else "-")
    if result is None or not result.outcome.startswith("agent:"):
        raise HelpdeskError(f"not carried out: {result.outcome if result else 'nothing stored'}")
    return result


# --------------------------------------------------------------------------- the command line
def act_of(args, ticket_id: int, usage) -> Act:
    """The Act for parsed `update`/`reply` arguments; `usage(text)` raises the usage error."""
    if args.command == "update":
        cmds = update_commands(args)
        if not cmds and not args.note:
            raise usage("update: nothing to change (give --status, --priority, --assign, --queue, --type, "
                        "--tag, --problem, --workaround or --note)")
        return Act(ticket_id, args.agent, cmds, args.note or "", note=bool(args.note), via="update")
    text = args.message if args.message is not None else _read(args.file, usage) if args.file else ""
    macro = getattr(args, "macro", None)
    if not text.strip() and not macro:
        raise usage("reply: give the answer with -m TEXT, --file F or --macro NAME")
    cmds = ((f"macro {macro}",) if macro else ()) + (("resolve",) if args.resolve else ())
    return Act(ticket_id, args.agent, cmds, text, via="reply")


def _read(path: str, usage) -> str:
    try:
        return sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(f"--file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def run_command(cfg, args, parse_ref, usage, out) -> int:
    """`helpdesk update|reply`: exit 0 done, 1 refused (agent, rights), 2 a bad value."""

    act = act_of(args, parse_ref(args.ref, cfg.helpdesk.ticket_prefix), usage)
    app = build_app(cfg)
    try:
        try:
            result = perform(app, act)
        except BadValue as exc:
            raise usage(str(exc)) from None
        detail = app.store.ticket_detail(result.ticket_id)
        sla = SlaReader(cfg, app.store.engine).show(result.ticket_id, app.clock())
        prefix = cfg.helpdesk.ticket_prefix
        if args.json:
            extra, _ = itil_show(app.store.engine, result.ticket_id, prefix, detail.ticket.status)   # as show --json
            out(json.dumps({**views.detail_json(detail, prefix, sla), **extra}, ensure_ascii=False, indent=1))
        else:
            t = detail.ticket
            out(f"{prefix}-{t.id}: {t.status}, {t.priority}, queue {t.queue}, "
                f"assignee {t.assignee or 'none'} ({result.outcome.split(':', 1)[1]} by {act.agent})")
            for line in sla_text(sla):
                out(line)
        return 0
    finally:
        app.close()
