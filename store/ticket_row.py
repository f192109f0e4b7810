"""The read-side value of one ticket (re-exported by store.records): a module of its own so
that `helpdesk tickets` on the light read path (store.quick_read) defines one dataclass,
not every read-side value (issue 16)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TicketRow:
    """One ticket as `helpdesk tickets` lists it (and as the store hands a ticket out)."""

    id: int
    subject: str
    type: str
    status: str
    priority: str
    queue: str
    requester: str
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    rules_version: str = ""
    archived_at: datetime | None = None  # when an archive import stored it (created_at is the mail's date)
