"""The database tables (sqlmodel): every table of the schema, in one module.

Tickets own messages, participants, thread keys and an append-only event log. Raw mail is
kept in `rawmessage` keyed by its sha256; attachment bytes live on disk, content-addressed
(store/blobs.py), and `attachment` rows only describe them. `quarantine` holds mail that
could not be processed, with the stage and reason. The outbox tables (one row per mail we
send, its recipients, suppressions, fuses, the requester's language), the agent path's
(ticket tags, agent-mail verdicts) and the SLA plans (policy and next due time per ticket,
fired escalation levels, the sweep's cursor) are queried by store/outbox.py, tickets.py and
sla_store.py; `nodebeat` (every process's heartbeat) by store/nodes.py; the IMAP intake's
state tables live in store/imap_state.py.
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
    # a requester's tickets by time: the mail flood check counts those of the last hour
    # (store.outbox), which an index on requester alone finds by reading each of them
    __table_args__ = (Index("ix_ticket_requester_created", "requester", "created_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    type: str
    status: str = Field(index=True)
    priority: str
    queue: str = Field(index=True)
    requester: str
    assignee: Optional[str] = None
    created_at: datetime = Field(index=True)
    updated_at: datetime
    message_count: int = 0
    rules_version: str = ""
    archived_at: Optional[datetime] = None  # set when an archive import stored it: when (see TicketHistory)


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
    every id its References/In-Reply-To name (ghost=True until that message arrives). A key
    belongs to at most one ticket (`uq_threadkey_key`): the first transaction to register it
    owns it, and a later message carrying it threads there (store/saving.py)."""

    __table_args__ = (Index("uq_threadkey_key", "key", unique=True),)
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


# ---------------------------------------------------------------------- the outbox (SQL: store/outbox.py)
class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id", index=True)
    kind: str                                   # ack | reopen | resolve | agent_new | agent_message
    audience: str                               # requester | agent
    template: str = ""
    auto: str = "auto-generated"
    message_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    nonce: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    mail_from: str
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = "pending"                     # pending | sending | sent | partial | failed
    attempts: int = 0
    created_at: datetime
    next_attempt_at: datetime
    lease_until: Optional[datetime] = None
    lease_token: str = ""
    enqueued_at: Optional[datetime] = None
    sent_at: Optional[datetime] = None
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class OutboxRecipient(SQLModel, table=True):
    __table_args__ = (Index("ix_outboxrcpt_email_time", "email", "planned_at"),)
    outbox_id: int = Field(foreign_key="outbox.id", primary_key=True)
    email: str = Field(primary_key=True)
    status: str = "pending"                     # pending | sent | failed | bounced | suppressed
    code: int = 0
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    planned_at: datetime
    updated_at: Optional[datetime] = None


class MailSuppression(SQLModel, table=True):
    email: str = Field(primary_key=True)
    until: datetime
    since: datetime
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class MailFuse(SQLModel, table=True):
    key: str = Field(primary_key=True)
    until: datetime
    count: int = 0


class TicketMail(SQLModel, table=True):
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    language: Optional[str] = None


# ---------------------------------------------------------------------- the agent path (SQL: store/tickets.py)
class TicketTag(SQLModel, table=True):
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    tag: str = Field(primary_key=True)


class AgentMessage(SQLModel, table=True):
    message_pk: int = Field(foreign_key="message.id", primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    verdict: str
    agent: str = ""
    reason: str = ""
    evidence: str = "[]"              # JSON list


# ---------------------------------------------------------------------- SLA plans (SQL: store/sla_store.py)
class TicketSla(SQLModel, table=True):
    __tablename__ = "ticketsla"
    __table_args__ = (Index("ix_ticketsla_next_due", "next_due_at"),)
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    policy: str
    reason: str = ""
    service: Optional[str] = None
    requested: Optional[str] = None
    queue: str = ""
    version: str = ""
    next_due_at: Optional[datetime] = None
    planned_at: datetime
    seen_event: int = 0


class SlaFired(SQLModel, table=True):
    __tablename__ = "slafired"
    __table_args__ = (UniqueConstraint("ticket_id", "key", name="uq_slafired_ticket_key"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    key: str
    target: str
    level: str
    due_at: datetime
    fired_at: datetime
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class NodeBeat(SQLModel, table=True):
    """One row per serve/worker process of the installation, whatever host it runs on: its
    heartbeat (store/nodes.py), so `helpdesk status` on any node sees every node."""

    __tablename__ = "nodebeat"
    node: str = Field(primary_key=True)          # [health] node, else host:state_dir
    kind: str = Field(primary_key=True)          # serve | worker
    host: str = ""
    pid: int = 0
    started_at: datetime
    last_seen: datetime
    spool_depth: int = 0


class SlaCursor(SQLModel, table=True):
    __tablename__ = "slacursor"
    name: str = Field(primary_key=True)
    low: int = 0                        # the sweep before last saw events up to here
    high: int = 0                       # the last sweep saw events up to here


# ---------------------------------------------------------------------- the daily agent digest (daemon.digest)
class AgentDigest(SQLModel, table=True):
    """One row per digest decided: `key` is `digest:EMAIL:LOCAL-DATE` (the agent's day), so
    restarts and several nodes send it once; `outbox_id` is NULL when there was nothing to send."""

    __tablename__ = "agentdigest"
    key: str = Field(primary_key=True)
    agent: str
    day: str                            # the agent's local date, YYYY-MM-DD
    outbox_id: Optional[int] = Field(default=None, foreign_key="outbox.id")
    created_at: datetime


# ---------------------------------------------------------------------- problems and satisfaction
# (SQL: store/problems.py, store/csat.py). Incidents are linked to their problem in
# `ticketlink` (kind `problem` on the incident, `incident` on the problem).
class KnownError(SQLModel, table=True):
    """A problem's workaround (`#workaround`): added to the acknowledgement of every new
    incident linked to it."""

    __tablename__ = "knownerror"
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)     # the problem
    workaround: str = Field(sa_column=Column(Text, nullable=False))
    set_by: str = ""
    set_at: datetime


class ProblemNotice(SQLModel, table=True):
    """Requesters told that a problem was resolved (each once per problem)."""

    __tablename__ = "problemnotice"
    problem_id: int = Field(primary_key=True)   # no foreign key, like ticketlink.other_id (backups restore per ticket)
    email: str = Field(primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")   # the incident the notice was sent on (its backup scope)
    sent_at: datetime


class CsatSurvey(SQLModel, table=True):
    """One satisfaction survey sent on a resolved ticket, and its answer (score 1-5, null
    while unanswered). Reports read this table."""

    __tablename__ = "csatsurvey"
    __table_args__ = (Index("ix_csatsurvey_requester_sent", "requester", "sent_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    requester: str
    queue: str
    message_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    sent_at: datetime
    score: Optional[int] = None
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    answered_at: Optional[datetime] = None
    answer_message_id: Optional[str] = None


# ---------------------------------------------------------------------- change approval (SQL: store/approvals_store.py)
class ChangeApproval(SQLModel, table=True):
    """One change ticket's approval: its state, the current stage and the plan frozen at
    the start (JSON: the stages' approvers and quorum, reminder and expiry times)."""

    __tablename__ = "changeapproval"
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    state: str = Field(index=True)             # awaiting-approval | approved | rejected | expired
    policy: str = ""                           # where the approvers came from: "service email", ...
    plan: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    stage: int = 1
    stage_started_at: datetime
    started_at: datetime
    decided_at: Optional[datetime] = None
    version: str = ""                          # approvals.yaml version


class ApprovalVote(SQLModel, table=True):
    """One approver's part in one stage: asked, reminded, answered (with the evidence)."""

    __tablename__ = "approvalvote"
    __table_args__ = (UniqueConstraint("ticket_id", "stage", "approver", name="uq_approvalvote"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    stage: int
    approver: str
    status: str = "pending"                    # pending | approved | rejected | expired | superseded
    requested_at: datetime
    reminded_at: Optional[datetime] = None
    decided_at: Optional[datetime] = None
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    evidence: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    message_id: str = ""
