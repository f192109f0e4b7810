"""What the pure stages are told about a ticket, as values: its state for the agent path,
its status history for the SLA clocks, and an agent's commands.

The store builds these from its rows (and reads the commands it applies); the pipeline
(daemon.pipeline.agent, .commands, .sla) decides with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PAUSED = frozenset({"pending"})          # statuses that pause every SLA clock
STOPPED = frozenset({"resolved", "closed"})
INITIAL_STATUS = "new"


@dataclass(frozen=True)
class TicketState:
    """The ticket as the agent path sees it (read before the write transaction)."""

    id: int
    subject: str
    status: str
    priority: str
    queue: str
    type: str
    requester: str
    assignee: str | None


@dataclass(frozen=True)
class Command:
    """One valid command: name (see NAMES) and its canonical value ("" for note)."""

    name: str
    value: str
    line: str

    def describe(self) -> str:
        return f"#{self.name} {self.value}".strip()


@dataclass(frozen=True)
class StatusChange:
    """The ticket entered `status` at `at`."""

    at: datetime
    status: str


@dataclass(frozen=True)
class TicketHistory:
    """What the SLA stage needs of one ticket; the store builds it from the ticket row,
    its `status` events and its public agent messages.

    `priority`/`queue`/`policy` are the current ones. `status_changes` are in time order;
    before the first one the status is "new". `first_response_at` is the first public
    agent reply (not an automatic acknowledgement), `last_update_at` the latest one.
    `archived_at` is when an archive import stored the ticket (its clocks run from the
    mail's own date): escalation levels due before it are the past, never fired."""

    ticket_id: int
    created_at: datetime
    priority: str
    queue: str
    policy: str
    status_changes: tuple[StatusChange, ...] = ()
    first_response_at: datetime | None = None
    last_update_at: datetime | None = None
    archived_at: datetime | None = None

    @property
    def status(self) -> str:
        return self.status_changes[-1].status if self.status_changes else INITIAL_STATUS

    @property
    def resolved_at(self) -> datetime | None:
        """When the ticket last entered a stopped status, if it is in one now."""
        if self.status not in STOPPED:
            return None
        at = self.status_changes[-1].at
        for change in reversed(self.status_changes):
            if change.status not in STOPPED:
                break
            at = change.at
        return at
