"""Group commit: many incoming messages in one write transaction.

A backlog (an import, a spool that filled while the database was busy) is worked in
batches: the worker threads, classifies and saves message after message through one
`WriteBatch`, which answers the same calls as the `Store` (`thread_candidates`,
`ticket_of_message`, `save_incoming`) inside one open transaction - so a reply sees the
ticket its parent opened a moment earlier in the same batch - and makes them all durable
with one commit (one fsync instead of one per message). Nothing is acknowledged (spool
entry removed, mail enqueued) before `commit` returns; a crash before it loses nothing,
and the replayed messages are recognised as duplicates if the commit had landed.

A failure while writing leaves the transaction unusable: the caller rolls the whole batch
back and handles its messages one by one (see daemon.worker).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from daemon.model import Envelope, ParsedMessage, Routing, ThreadCandidates, ThreadDecision
from store import saving
from store.records import SaveResult


class WriteBatch:
    """One open write transaction over which a worker saves many messages."""

    def __init__(self, store):
        self.store = store
        self.session: Session | None = None

    def _s(self) -> Session:
        if self.session is None:
            self.session = self.store._write()
        return self.session

    def _guard(self, call):
        try:
            return call()
        except OperationalError as exc:
            raise self.store._unavailable(exc) from exc

    # ------------------------------------------------------------------ what the pipeline asks
    def thread_candidates(self, keys: tuple[str, ...], tag: int | None) -> ThreadCandidates:
        return self._guard(lambda: saving.thread_candidates(self._s().connection(), keys, tag))

    def ticket_of_message(self, message_id: str) -> int | None:
        return self._guard(lambda: saving.ticket_of_message(self._s().connection(), message_id))

    def save_incoming(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                      decision: ThreadDecision, routing: Routing, now: datetime,
                      *, own_addresses: frozenset[str] = frozenset(), plan=None) -> SaveResult:
        return self._guard(lambda: self.store.save_in(self._s(), msg, envelope, raw, raw_sha256, decision,
                                                      routing, now, own_addresses=own_addresses, plan=plan))

    # ------------------------------------------------------------------ the transaction
    def commit(self) -> None:
        """Make every save so far durable; the batch can go on with a new transaction."""
        if self.session is not None:
            session, self.session = self.session, None
            try:
                self._guard(session.commit)
            finally:
                session.close()

    def rollback(self) -> None:
        """Forget every save since the last commit."""
        if self.session is not None:
            session, self.session = self.session, None
            try:
                session.rollback()
            finally:
                session.close()
