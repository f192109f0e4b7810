"""Values about mail as it crosses the pipeline stages (part of daemon.model).

parse -> ParsedMessage; thread -> ThreadDecision; classify -> Routing. These are frozen
dataclasses: no ORM rows and no `email.message` objects ever leave the stage that made
them. The store turns them into rows; the CLI turns rows back into JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon.envelope import Envelope  # noqa: F401 (re-exported: a module of its own for the pipe hand-off)


@dataclass(frozen=True)
class Address:
    """One mailbox: display name (may be empty) and the address, lower-cased domain."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class AttachmentPart:
    """A non-body MIME part. `filename` is display metadata only, sanitised; the bytes are
    stored content-addressed under a server-generated name (their sha256)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    sha256: str = ""
    size: int = 0
    inline: bool = False


@dataclass(frozen=True)
class DsnReport:
    """What a delivery status notification (RFC 3464 or a recognisable non-standard bounce)
    reports: the action (failed/delayed/delivered/relayed/expanded), the status code, the
    failed recipients, and the Message-ID of the original mail when it can be found."""

    action: str
    status: str
    recipients: tuple[str, ...]
    original_message_id: str | None
    diagnostic: str = ""


@dataclass(frozen=True)
class MachineVerdict:
    """Whether a human wrote this. `kind` is one of: human, auto_reply, auto_generated,
    bulk, list, bounce, feedback, loop. `reasons` lists the evidence (header: value).
    `no_auto_reply` is True for anything we must never answer automatically.
    `suppress_auto_reply` is the sender's own request (X-Auto-Response-Suppress:
    All/OOF/AutoReply) not to be auto-answered; it does not make the mail machine-made."""

    kind: str
    reasons: tuple[str, ...] = ()
    dsn: DsnReport | None = None
    suppress_auto_reply: bool = False

    @property
    def is_human(self) -> bool:
        return self.kind == "human"

    @property
    def no_auto_reply(self) -> bool:
        return self.kind != "human" or self.suppress_auto_reply


@dataclass(frozen=True)
class ParsedMessage:
    """Everything the pipeline needs from one mail, decoded and sanitised.

    Header-derived strings never contain CR/LF. `message_id` is without angle brackets;
    when the mail has none, a synthetic one is derived from the content digest and
    `message_id_synthetic` is True. `content_digest` ignores transport trace headers
    (Received, Return-Path, Delivered-To...) so one mail delivered twice has one digest."""

    message_id: str
    message_id_synthetic: bool
    content_digest: str
    subject: str
    from_addr: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str | None
    attachments: tuple[AttachmentPart, ...]
    headers: tuple[tuple[str, str], ...]
    machine: MachineVerdict
    defects: tuple[str, ...] = ()
    language: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None


@dataclass(frozen=True)
class KnownMessage:
    """A message the store already knows, as threading sees it: which ticket it belongs
    to and that ticket's status. `ghost` is True for an id only seen in References."""

    message_id: str
    ticket_id: int
    ticket_status: str
    ghost: bool = False


@dataclass(frozen=True)
class TicketGlance:
    """What threading may know of the ticket named by a subject tag."""

    ticket_id: int
    status: str
    participants: frozenset[str]     # lower-cased addresses: requester, Cc'd, agents


@dataclass(frozen=True)
class ThreadCandidates:
    """The evidence the store found for one message's thread keys."""

    known: tuple[KnownMessage, ...] = ()       # any of in_reply_to/references we know
    tagged: TicketGlance | None = None          # ticket named by the subject tag, if it exists


@dataclass(frozen=True)
class ThreadDecision:
    """Where a message goes. action: append | reopen | new | new_linked.

    `ticket_id` is the ticket to append to (append/reopen) or None for a new ticket;
    `link_to` is the ticket a new one is linked to; `parent_message_id` the message this
    one answers (may be a ghost); `evidence` says which header or token decided."""

    action: str
    ticket_id: int | None
    evidence: str
    parent_message_id: str | None = None
    link_to: int | None = None


@dataclass(frozen=True)
class Routing:
    """What classification decided for a message: type, queue, priority and the reasons.

    `suppress_ack` is True when no automatic mail may go to the sender."""

    type: str
    queue: str
    priority: str
    tags: tuple[str, ...] = ()
    assignee: str | None = None
    hits: tuple[str, ...] = ()
    misses: tuple[str, ...] = ()
    rules_version: str = ""
    suppress_ack: bool = False
    action: str = "ticket"           # ticket | drop | quarantine | spam
    impact: str | None = None        # as set by rules/service (priority.yaml impact_levels)
    urgency: str | None = None       # as set by rules (priority.yaml urgency_levels)
    service: str | None = None       # services.yaml entry a rule mapped the mail to
    sla_policy: str | None = None    # the service's SLA policy name
    ack_template: str | None = None  # acknowledgement template chosen by a rule; None: the standard one
    decided: tuple[str, ...] = ()    # fields a rule set (on a reply, only these should change the ticket)
    problem: int | None = None       # the open problem a rule links a new ticket to (`problem: HD-7`)


# ---------------------------------------------------------------------- outgoing mail
# plan (daemon.pipeline.notify) -> store (store.outbox): what the planning stage hands the
# store to write in the same transaction as the ticket change.

@dataclass(frozen=True)
class OutgoingMail:
    """One automatic mail, rendered once at planning time. The store keeps these exact
    bytes, so every (re)send is the same mail with the same Message-ID. `nonce` (hex) keys
    the row for the bounce address token; `mail_from` is that VERP envelope sender.
    kind: ack | reopen | resolve | agent_new | agent_message."""

    ticket_id: int | None
    kind: str
    audience: str                    # requester | agent
    template: str                    # the template used, e.g. "de/requester/ack"
    message_id: str                  # without angle brackets
    nonce: str
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes = field(repr=False)
    auto: str = "auto-generated"     # the Auto-Submitted value: auto-replied | auto-generated


@dataclass(frozen=True)
class BounceMark:
    """A delivery report about one of our mails: outbox row, the recipients it names
    (empty: every recipient of the row), action failed|delayed, status code, diagnostic."""

    outbox_id: int
    recipients: tuple[str, ...]
    action: str
    status: str = ""
    diagnostic: str = ""
    suppress_until: datetime | None = None   # failed: no automatic mail to them until then


@dataclass(frozen=True)
class FuseAlert:
    """A loop/rate fuse that tripped: raised once per `key` until `until` (one alert, not a
    storm); `text` goes to the log and to the ticket's events."""

    key: str
    until: datetime
    text: str


@dataclass(frozen=True)
class MailHistory:
    """What the store knows that mail planning needs, read inside the ticket transaction.

    Counts are of automatic mails already planned (any status) per recipient address."""

    acks: int = 0                                     # acknowledgements planned for this ticket
    last_hour: tuple[tuple[str, int], ...] = ()       # (recipient, count) in the last hour
    last_day: tuple[tuple[str, int], ...] = ()        # (recipient, count) in the last 24 hours
    bouncing: frozenset[str] = frozenset()            # recipients whose mail bounced recently
    sender_new_tickets: int = 0                       # tickets the sender opened in the last hour
    conversation: tuple[str, ...] = ()                # message ids of the ticket, oldest first
    language: str | None = None                       # the requester's language, when known
    notices: frozenset[tuple[str, str]] = frozenset()  # (kind, recipient) of this ticket's automatic
                                                      # requester mail planned within the RFC 3834 window

    def sent_hour(self, email: str) -> int:
        return dict(self.last_hour).get(email.lower(), 0)

    def sent_day(self, email: str) -> int:
        return dict(self.last_day).get(email.lower(), 0)


@dataclass(frozen=True)
class MailEffects:
    """Everything planning decided for one ticket change: mails to write to the outbox,
    delivery reports to record, fuses that tripped, mails held back (with the reason, for
    the ticket's events) and the requester's language to remember."""

    mails: tuple[OutgoingMail, ...] = ()
    bounces: tuple[BounceMark, ...] = ()
    alerts: tuple[FuseAlert, ...] = ()
    suppressed: tuple[str, ...] = ()
    language: str | None = None
