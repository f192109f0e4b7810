"""Read-only figures for `helpdesk status`, /healthz and /metrics: the outbox as the relay sees it.

One function, a few aggregate queries; nothing here writes. `relay_failing` is true when
the newest delivery attempt on record was a temporary failure (a recipient still pending
with a reason) later than the newest successful delivery: mail is waiting because the
relay keeps refusing or cannot be reached. `failing_since` is when the oldest mail still
failing that way was queued (its first attempt): how long the relay has been failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from daemon.clock import aware as _aware
from store.outbox import Outbox, OutboxRecipient


@dataclass(frozen=True)
class OutboxFigures:
    """The outbox at one moment (see module docstring)."""

    pending: int
    oldest_pending_at: datetime | None
    overdue: int                      # pending and queued before the first retry was due
    last_error: str
    last_error_at: datetime | None
    last_sent_at: datetime | None
    failing_since: datetime | None = None

    @property
    def relay_failing(self) -> bool:
        if self.last_error_at is None:
            return False
        return self.last_sent_at is None or self.last_error_at > self.last_sent_at


def outbox_figures(engine: Engine, overdue_before: datetime) -> OutboxFigures:
    """Pending count, oldest pending mail, mail waiting past its first retry, last relay error."""
    ob, rc = Outbox.__table__, OutboxRecipient.__table__
    waiting = ob.c.status.in_(("pending", "sending"))
    cutoff = overdue_before.astimezone(timezone.utc)
    with engine.connect() as c:
        pending, oldest = c.execute(select(func.count(), func.min(ob.c.created_at)).where(waiting)).one()
        overdue = c.execute(select(func.count()).where(waiting, ob.c.created_at <= cutoff)).scalar_one()
        last_sent = c.execute(select(func.max(rc.c.updated_at)).where(rc.c.status == "sent")).scalar_one()
        failed = (rc.c.status == "pending") & (rc.c.reason != "") & rc.c.updated_at.is_not(None)
        err = c.execute(select(rc.c.reason, rc.c.updated_at).where(failed)
                        .order_by(rc.c.updated_at.desc()).limit(1)).first()
        since = None
        if err is not None:
            still = failed if last_sent is None else failed & (rc.c.updated_at > last_sent)
            since = c.execute(select(func.min(ob.c.created_at)).select_from(rc.join(ob, ob.c.id == rc.c.outbox_id))
                              .where(still)).scalar_one()
    return OutboxFigures(int(pending), _aware(oldest), int(overdue), err[0] if err else "",
                         _aware(err[1]) if err else None, _aware(last_sent), _aware(since))
