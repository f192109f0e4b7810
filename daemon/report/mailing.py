"""The continual improvement report mailed to managers on a schedule (`[reports]` in config.toml).

A thread of `helpdesk serve` looks every [queue] sweep_seconds: `period_due` (pure) names
the latest period that has ended and whose send hour has come (weekly: Monday 00:00 to
Monday 00:00 UTC, sent from `hour` on Monday; monthly: the calendar month, sent on the 1st;
daily: the day before). The report of that period is built (daemon.report.collect), rendered
as text with the HTML page as its alternative part (charts in inline SVG: it reads the same
in a mail client) and written into the outbox as one mail to every address in `to`. Its
Message-ID is derived from the schedule and the period (`report.weekly.20260330@domain`):
the outbox's unique Message-ID makes it go out once per period, also with several
processes, an overlapping pass or a restart; a daemon that was down sends the latest
period it missed, not the older ones.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy.exc import IntegrityError

from daemon.clock import utcnow
from daemon.model import Address, MailEffects, OutgoingMail
from daemon.pipeline import tokens
from daemon.pipeline.compose import Headers, compose
from daemon.pipeline.notify import Desk
from daemon.pipeline.render import Rendered
from daemon.report.collect import collect
from daemon.report.page import render_html
from daemon.report.render import render_text
from store.report_reads import outbox_has
from store.sla_store import SlaStore

log = logging.getLogger(__name__)


def period_due(schedule: str, hour: int, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the latest period whose report may be sent at `now` (UTC)."""
    now = now.astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == "daily":
        end = day if now.hour >= hour else day - timedelta(days=1)
        return end - timedelta(days=1), end
    if schedule == "monthly":
        end = day.replace(day=1)
        if now < end.replace(hour=hour):
            end = (end - timedelta(days=1)).replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        return start, end
    end = day - timedelta(days=day.weekday())
    if now < end.replace(hour=hour):
        end -= timedelta(days=7)
    return end - timedelta(days=7), end


class ReportMailer:
    """See module docstring."""

    def __init__(self, settings, desk: Desk, engine, sla: Callable[[], Any], ring: tokens.Keyring, *,
                 clock: Callable[[], datetime] = utcnow, enqueue_mail: Callable[[int], Any] = lambda i: None,
                 random: Callable[[int], bytes] = os.urandom):
        self.settings, self.desk, self.engine, self.sla, self.ring = settings, desk, engine, sla, ring
        self.clock, self.enqueue_mail, self.random = clock, enqueue_mail, random
        self.store = SlaStore(engine)

    def message_id(self, end: datetime) -> str:
        return f"report.{self.settings.schedule}.{end:%Y%m%d}@{self.desk.domain}"

    def run_once(self) -> int | None:
        """Send the due report unless it went out already; its outbox id, or None."""
        if not self.settings.to:
            return None
        now = self.clock()
        start, end = period_due(self.settings.schedule, self.settings.hour, now)
        mid = self.message_id(end)
        if outbox_has(self.engine, mid):
            return None
        figures = collect(self.engine, self.sla(), start, end, now)
        title = f"{self.desk.name}: {self.settings.schedule} service desk report, {start:%Y-%m-%d} to " \
                f"{end - timedelta(days=1):%Y-%m-%d}"
        body = Rendered(title, render_text(figures), render_html(figures, title=title, prefix=self.desk.prefix),
                        "report", None)
        nonce = self.random(8)
        headers = Headers(from_name=self.desk.name, from_email=self.desk.address,
                          to=tuple(Address("", a) for a in self.settings.to), subject=title, message_id=mid,
                          date=now, auto="auto-generated", loop=tokens.loop_marker(self.desk.address))
        mail = OutgoingMail(None, "report", "manager", "report", mid, nonce.hex(),
                            tokens.bounce_address(self.ring, self.desk.address, nonce),
                            tuple(a.lower() for a in self.settings.to), compose(headers, body))
        try:
            with self.store.transaction() as tx:
                ids = tx.mail(MailEffects(mails=(mail,)), None, now).outbox_ids
        except IntegrityError:                      # another process sent it first
            return None
        log.info("report for %s to %s mailed to %s (outbox %s)", start.isoformat(), end.isoformat(),
                 ", ".join(self.settings.to), ids[0])
        try:
            self.enqueue_mail(ids[0])
        except Exception as exc:                    # the outbox sweep sends it
            log.warning("outbox=%s report not enqueued (%s); the sweep will", ids[0], exc)
        return ids[0]


def report_sweeper(mailer: ReportMailer, stop: threading.Event, every: float) -> None:
    """The report mailing loop (a thread in `helpdesk serve`)."""
    while True:
        try:
            mailer.run_once()
        except Exception:                           # the sweeper never dies
            log.exception("report mailing failed")
        if stop.wait(every):
            return
