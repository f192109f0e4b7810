"""The daily agent digest (config.toml `[digest]`): each registered agent's open assigned
tickets, the SLA risks first, each with its signed reply address (as #mine lists them).

`Digests.run()` is called by `helpdesk serve`'s SLA sweep loop (every `[queue] sweep_seconds`)
with the process's clock (daemon.clock: ManualClock and FileClock move it in tests). It asks
daemon.pipeline.digest which agents' local hour has come today, and for each one not decided
yet runs one write transaction: read the tickets and their SLA clocks, write the digest's
outbox row (template agent/digest) and its `agentdigest` row keyed `digest:EMAIL:DATE`.
The key is checked first and is the table's primary key, so a restart sends nothing twice
and a second node racing on it rolls back (IntegrityError) and sends nothing. An agent with
no open tickets gets no mail (the row records that). Keys known to be decided are kept in
memory for the day, so a pass costs no query per agent once the day's digests are out.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.exc import DBAPIError, IntegrityError

from daemon.clock import utcnow
from daemon.desk_mail import MAX_LISTED, DeskQueries
from daemon.config_sections import DigestSection
from daemon.errors import HelpdeskError
from daemon.model import MailEffects
from daemon.pipeline.agent_mail import MailKit, agent_mail
from daemon.pipeline.digest import DigestDue, digest_lines, due_digests, roster_agents
from store.desk_reads import open_tickets

log = logging.getLogger(__name__)


class Digests:
    """See module docstring."""

    def __init__(self, settings: DigestSection, store, queries: DeskQueries, rules: Callable[[], Any], *,
                 clock: Callable[[], datetime] = utcnow, enqueue_mail: Callable[[int], Any] = lambda i: None):
        self.settings, self.store, self.queries, self.rules = settings, store, queries, rules
        self.clock, self.enqueue_mail = clock, enqueue_mail
        self.done: set[str] = set()

    def run(self) -> int:
        """Send the digests due now; how many mails were written (0 when off)."""
        rules = self.rules() if self.settings.enabled else None
        if rules is None:
            return 0
        now, sent = self.clock(), 0
        due = due_digests(roster_agents(rules.queues), now, self.settings.hour, self.settings.timezone)
        for d in due:
            if d.key in self.done:
                continue
            try:
                outbox_id = self._one(d, now)
            except IntegrityError:
                log.info("digest %s: decided by another process; nothing sent", d.key)
            except (DBAPIError, HelpdeskError) as exc:      # the next pass tries again
                log.warning("digest %s not sent now: %s", d.key, exc)
                continue
            else:
                if outbox_id is not None:
                    sent += 1
                    log.info("digest %s written as outbox=%s", d.key, outbox_id)
                    self._enqueue(outbox_id)
            self.done.add(d.key)
        self.done &= {d.key for d in due}            # yesterday's keys are never asked for again
        return sent

    def _one(self, due: DigestDue, now: datetime) -> int | None:
        """One agent's digest in one transaction; its outbox id (None: decided, nothing sent)."""
        with self.store.write() as tx:
            if tx.digest_done(due.key):
                return None
            rows = open_tickets(tx.s, assignee=due.agent.email, limit=MAX_LISTED)
            outbox_id = None
            if rows:
                notes = {t.id: self.queries.sla_note(tx, t.id, now, self.settings.risk_percent) for t in rows}
                title, lines = digest_lines(rows, notes, lambda t, note: self.queries.entry(t, due.agent, note),
                                            day=due.day, listed_max=MAX_LISTED)
                n = self.queries.notices
                kit = MailKit(n.desk, n.templates.current, n.ring, now, n.random, n.reply_token)
                mail = agent_mail(kit, "agent_digest", "digest", due.agent, None, None,
                                  {"name": "", "description": ""}, {"lines": lines, "title": title}, title)
                outbox_id = tx.apply_mail(MailEffects(mails=(mail,)), None, now).outbox_ids[0]
            tx.record_digest(due.key, due.agent.email, due.day.isoformat(), outbox_id, now)
            tx.commit()
        return outbox_id

    def _enqueue(self, outbox_id: int) -> None:
        try:
            self.enqueue_mail(outbox_id)
        except Exception as exc:                     # the outbox sweep sends it
            log.warning("outbox=%s (digest) not enqueued (%s); the sweep will", outbox_id, exc)


def digest_loop(digests: Digests, stop, every: float) -> None:
    """The digest loop (a thread in `helpdesk serve`, only when `[digest] enabled`): a pass
    at once, then every `every` seconds; it never dies."""
    while True:
        try:
            digests.run()
        except Exception:
            log.exception("digest pass failed")
        if stop.wait(every):
            return
