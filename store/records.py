"""Read-side values the store hands out: plain frozen dataclasses, never ORM rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from store.ticket_row import TicketRow  # noqa: F401 (re-exported: a module of its own for store.quick_read)


@dataclass(frozen=True)
class Written:
    """The ticket as the save of one message left it, in the still open transaction: its
    row (what a read would give), and for a ticket that save created (`created`) the id of
    its last event. A created ticket has no SLA plan, fired levels, status events, agent
    replies or problem yet: planning reads none of them (daemon.outbound, daemon.escalation).
    Valid only while nothing else has written to the ticket (daemon.message_path drops it)."""

    ticket: TicketRow
    created: bool = False
    last_event: int = 0


@dataclass(frozen=True)
class SaveResult:
    """What storing one incoming message did. outcome: created | appended | reopened |
    linked | duplicate | bounce | orphan."""

    outcome: str
    ticket_id: int | None
    message_pk: int | None
    message_id: str
    met: tuple[int, ...] = ()         # tickets newly linked: their thread keys met this one's in the message
    written: Written | None = field(default=None, compare=False, repr=False)   # the ticket as the save left it


@dataclass(frozen=True)
class AttachmentRow:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class MessageRow:
    pk: int
    message_id: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    direction: str
    visibility: str
    text: str
    received_at: datetime
    machine_kind: str
    thread_evidence: str
    parent_message_id: str | None
    attachments: tuple[AttachmentRow, ...] = ()
    raw_sha256: str = ""  # the stored raw mail (`rawmessage`), as received: the original


@dataclass(frozen=True)
class EventRow:
    at: datetime
    kind: str
    detail: str


@dataclass(frozen=True)
class TicketDetail:
    ticket: TicketRow
    participants: tuple[tuple[str, str], ...]
    links: tuple[tuple[int, str], ...]
    messages: tuple[MessageRow, ...]
    events: tuple[EventRow, ...]
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    created_at: datetime
    stage: str
    reason: str
    detail: str
    raw_sha256: str
    size: int
    envelope: dict = field(default_factory=dict)
    header_from: str = ""
    header_subject: str = ""
    status: str = "held"
    released_at: datetime | None = None
