"""Prometheus metrics of one helpdeskd process (prometheus_client, one registry per process).

The composition root makes one `Metrics` and passes it down; nothing here is a module
global. Counters that code increments: `message_received(intake)` (also done by the spool
observer for every entry a worker reads for the first time, so SMTP, LMTP, IMAP, files
and the pipe hand-off all count, labelled by the envelope's source), `outbox_result(status)`
(`sent` / `failed`, one per outbox row settled by a send attempt), `escalation_fired()`.
Figures read at scrape time: `helpdesk_spool_depth` (the spool), `helpdesk_outbox_pending`
(the database), `helpdesk_imap_up{account}` (the pollers), and the spool worker's
`stored` / `quarantined` counts as `helpdesk_messages_stored_total` /
`helpdesk_messages_quarantined_total`. The histogram `helpdesk_ingest_seconds` is the
time from the spool write (its entry's name holds it) to the entry being done, stored or
quarantined. A collector that fails (database down) leaves its figure out of that scrape.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from store.observe import outbox_figures

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
IMAP_UP_STATES = {"idle", "polling"}             # connected, logged in, taking mail


class Metrics:
    """The counters and scrape-time figures of one process (see module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("helpdesk_messages_received", "Messages made durable in the spool, by intake",
                                ["intake"], registry=r)
        self.outbox_sent = Counter("helpdesk_outbox_sent", "Outbox mails delivered to the relay", registry=r)
        self.outbox_failed = Counter("helpdesk_outbox_failed", "Outbox mails given up (5xx or retry_days over)",
                                     registry=r)
        self.escalations = Counter("helpdesk_escalations_fired", "SLA escalation levels fired", registry=r)
        self.ingest_seconds = Histogram("helpdesk_ingest_seconds", "Seconds from the spool write to stored",
                                        buckets=INGEST_BUCKETS, registry=r)
        self._live = _Live()
        r.register(self._live)

    # -- increments (plain calls for the worker, the tasks and the intake edges)
    def message_received(self, intake: str) -> None:
        self.received.labels(intake=intake or "unknown").inc()

    def outbox_result(self, status: str | None) -> None:
        if status == "sent":
            self.outbox_sent.inc()
        elif status == "failed":
            self.outbox_failed.inc()

    def escalation_fired(self, n: int = 1) -> None:
        self.escalations.inc(n)

    def spooled_done(self, base: str, now_ns: int | None = None) -> None:
        """An entry left the spool for good: observe the time since it was written."""
        try:
            written = int(base.split(".", 1)[0])
        except ValueError:
            return
        self.ingest_seconds.observe(max(0.0, ((now_ns or time.time_ns()) - written) / 1e9))

    # -- scrape-time figures
    def watch(self, *, spool=None, worker_stats: Callable[[], dict] | None = None,
              outbox_pending: Callable[[], int] | None = None,
              imap: Callable[[], Iterable[Any]] | None = None) -> None:
        """Say where the scrape-time figures come from; each is optional."""
        self._live.spool, self._live.worker_stats = spool, worker_stats
        self._live.outbox_pending, self._live.imap = outbox_pending, imap
        if spool is not None:
            spool.observer = SpoolObserver(self)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)


class SpoolObserver:
    """Told by the spool of every entry read by a worker and every entry done."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def read(self, claim, envelope) -> None:
        if claim.attempt == 1:               # first read: counted once, whichever process spooled it
            self.metrics.message_received(envelope.source.split(":", 1)[0])

    def done(self, claim) -> None:
        self.metrics.spooled_done(claim.base)


class _Live:
    """A prometheus_client collector reading figures at scrape time."""

    def __init__(self) -> None:
        self.spool = self.worker_stats = self.outbox_pending = self.imap = None

    def describe(self):
        return []

    def collect(self):
        yield from _safely("spool depth", self._spool)
        yield from _safely("worker counts", self._worker)
        yield from _safely("outbox pending", self._outbox)
        yield from _safely("imap state", self._imap)

    def _spool(self):
        if self.spool is not None:
            yield GaugeMetricFamily("helpdesk_spool_depth", "Messages waiting in the spool", value=self.spool.depth())

    def _worker(self):
        if self.worker_stats is None:
            return
        stats = self.worker_stats()
        yield CounterMetricFamily("helpdesk_messages_stored", "Messages stored by the spool worker (not duplicates)",
                                  value=stats.get("stored", 0))
        yield CounterMetricFamily("helpdesk_messages_quarantined", "Messages quarantined by the spool worker",
                                  value=stats.get("quarantined", 0))

    def _outbox(self):
        if self.outbox_pending is not None:
            yield GaugeMetricFamily("helpdesk_outbox_pending", "Outbox mails not yet delivered",
                                    value=self.outbox_pending())

    def _imap(self):
        if self.imap is None:
            return
        up = GaugeMetricFamily("helpdesk_imap_up", "1 when the IMAP account is connected", labels=["account"])
        for status in self.imap():
            up.add_metric([status.account], 1.0 if status.state in IMAP_UP_STATES else 0.0)
        yield up


def _safely(what: str, collect: Callable[[], Iterable]) -> Iterable:
    try:
        return list(collect())
    except Exception as exc:                  # a scrape never fails for one figure
        log.warning("metrics: %s not collected: %s", what, exc)
        return []


def outbox_pending_of(engine) -> Callable[[], int]:
    """A scrape-time reader of the outbox's pending count."""
    def read() -> int:
        return outbox_figures(engine, datetime.now(timezone.utc)).pending
    return read
