"""The core database tables (sqlmodel); only store/ modules query them.

The outbox (store/outbox.py), agent-path (store/tickets.py), SLA (store/sla_store.py) and
IMAP-state (store/imap_state.py) tables are declared next to their SQL on the same
metadata; store/db.py imports those modules so `create_schema` makes every table.

Tickets own messages, participants, thread keys and an append-only event log. Raw mail is
kept in `rawmessage` keyed by its sha256; attachment bytes live on disk, content-addressed
(store/blobs.py), and `attachment` rows only describe them. `quarantine` holds mail that
could not be processed, with the stage and reason.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1


class SchemaInfo(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str


class Ticket(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    type: str
    status: str = Field(index=True)
    priority: str
    queue: str = Field(index=True)
    requester: str = Field(index=True)
    assignee: Optional[str] = None
    created_at: datetime = Field(index=True)
    updated_at: datetime
    message_count: int = 0
    rules_version: str = ""


class Participant(SQLModel, table=True):
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    email: str = Field(primary_key=True)
    role: str                              # requester | cc | agent


class TicketLink(SQLModel, table=True):
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    other_id: int = Field(primary_key=True)
    kind: str = Field(primary_key=True)    # related | follow_up_of | merged_into


class RawMessage(SQLModel, table=True):
    sha256: str = Field(primary_key=True)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Message(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("message_id", "digest", name="uq_message_identity"),
        Index("ix_message_ticket", "ticket_id", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    message_id: str = Field(index=True)
    message_id_synthetic: bool = False
    message_id_reuse: bool = False
    digest: str
    raw_sha256: str
    direction: str                         # in | out
    visibility: str                        # public | internal
    from_addr: str = ""
    from_name: str = ""
    to_addrs: str = "[]"                   # JSON list of "Name <addr>" strings
    cc_addrs: str = "[]"
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    received_at: datetime
    sent_at: Optional[datetime] = None
    in_reply_to: str = "[]"                # JSON list
    references: str = Field(default="[]", sa_column=Column("refs", Text, nullable=False, default="[]"))
    parent_message_id: Optional[str] = None
    machine_kind: str = "human"
    machine_reasons: str = "[]"            # JSON list
    thread_evidence: str = ""
    routing: str = "{}"                    # JSON: type, queue, priority, hits, misses, version
    envelope: str = "{}"                   # JSON Envelope
    defects: str = "[]"


class ThreadKey(SQLModel, table=True):
    """Message ids that lead to a ticket: each stored message's own id (ghost=False) and
    every id its References/In-Reply-To name (ghost=True until that message arrives)."""

    key: str = Field(primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    ghost: bool = True


class Attachment(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False


class Event(SQLModel, table=True):
    __table_args__ = (Index("ix_event_ticket", "ticket_id", "id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    at: datetime
    kind: str
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Quarantine(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    created_at: datetime
    stage: str                             # parse | thread | store | worker ...
    reason: str
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    raw_sha256: str = Field(index=True)
    size: int = 0
    envelope: str = "{}"
    header_from: str = ""
    header_subject: str = ""
    status: str = Field(default="held", index=True)   # held | released
    released_at: Optional[datetime] = None

