"""Relay sessions and batched sending against real aiosmtpd relays on loopback (issue 16):
one connection carries many mails, the envelope is pipelined where PIPELINING is offered,
a refused recipient is followed by RSET and the session goes on, a drain sends a burst on
one connection, and a crash between the relay's 250 and the outbox mark sends nothing
twice (the send journal; without it the same Message-ID goes out again)."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from daemon import tasks
from daemon.mailer import Relay, RelaySettings
from daemon.model import Envelope
from tests.integration.test_outbox import close_desk, make_desk, new_mail
from tests.integration.test_outbox_relay import Sink, SinkHandler

FROM = "support+bounce-abc@example.com"


class CountingHandler(SinkHandler):
    """A SinkHandler that counts connections (EHLO per peer), mails per connection and
    RSETs, offers PIPELINING when asked, and notes what had arrived unanswered when MAIL
    was handled (the pipelined RCPTs and DATA)."""

    def __init__(self, pipelining: bool = True):
        super().__init__()
        self.pipelining = pipelining
        self.connections: list = []
        self.per_connection: Counter = Counter()
        self.rsets = 0
        self.waiting_at_mail: list[bytes] = []
        self.servers: list = []
        self.idle_421 = False                   # answer the next MAIL 421 (an idle session timed out)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.connections.append(session.peer)
        self.servers.append(server)
        return responses[:-1] + ["250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.waiting_at_mail.append(bytes(server._reader._buffer))     # read by the server, not yet handled
        if self.idle_421:
            self.idle_421 = False
            return "421 4.4.2 idle too long, closing"
        self.per_connection[session.peer] += 1
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RSET(self, server, session, envelope):
        self.rsets += 1
        return "250 OK"


def counting_sink(pipelining: bool = True) -> Sink:
    sink = Sink()
    sink.handler = CountingHandler(pipelining)
    sink.controller.handler = sink.handler
    return sink


def raw(n: int) -> bytes:
    return (f"From: support@example.com\r\nTo: x@example.org\r\nSubject: {n}\r\nMessage-ID: <s{n}@example.com>\r\n"
            f"\r\nmail {n}\r\n.a line with a dot\r\n").encode()


def relay(port: int) -> Relay:
    return Relay(RelaySettings(host="127.0.0.1", port=port, timeout=5))


@pytest.mark.parametrize("pipelining", [True, False])
def test_one_connection_carries_many_mails(pipelining):
    with counting_sink(pipelining) as sink:
        with relay(sink.port).session() as session:
            results = [session.send(FROM, [f"u{n}@example.org"], raw(n)) for n in range(6)]
        assert [r[0].outcome for r in results] == ["sent"] * 6
        got = sink.handler.wait_for(6)
        assert [m[2] for m in got] == [raw(n) for n in range(6)]               # byte for byte, dots and all
        assert len(sink.handler.connections) == 1 and session.connections == 1
        assert list(sink.handler.per_connection.values()) == [6]
        waiting = sink.handler.waiting_at_mail
        if pipelining:          # MAIL, RCPT and DATA came in one write: RCPT and DATA waited behind MAIL
            assert all(b"RCPT TO:<" in w and b"DATA\r\n" in w for w in waiting)
        else:
            assert waiting == [b""] * 6


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_recipient_is_followed_by_rset_and_the_session_goes_on(pipelining):
    with counting_sink(pipelining) as sink:
        sink.handler.rcpt_replies = {"gone@example.org": ["550 5.1.1 no such user"]}
        with relay(sink.port).session() as session:
            first = session.send(FROM, ["a@example.org"], raw(1))
            lone = session.send(FROM, ["gone@example.org"], raw(2))       # nothing accepted: DATA refused
            mixed = session.send(FROM, ["b@example.org", "gone@example.org"], raw(3))
            last = session.send(FROM, ["c@example.org"], raw(4))
        assert [r.outcome for r in first] == ["sent"] and [(r.outcome, r.code) for r in lone] == [("perm", 550)]
        assert {r.email: r.outcome for r in mixed} == {"b@example.org": "sent", "gone@example.org": "perm"}
        assert [r.outcome for r in last] == ["sent"]              # aiosmtpd answers a nested MAIL with 503
        got = sink.handler.wait_for(3)
        assert [m[1] for m in got] == [("a@example.org",), ("b@example.org",), ("c@example.org",)]
        assert sink.handler.rsets == 2 and len(sink.handler.connections) == 1


def test_an_unreachable_relay_fails_the_rest_of_the_session_at_once():
    from tests.conftest import free_port
    with relay(free_port()).session() as session:
        results = [session.send(FROM, [f"u{n}@example.org"], raw(n))[0] for n in range(3)]
    assert {r.outcome for r in results} == {"temp"} and len({r.reason for r in results}) == 1
    assert "ConnectionRefusedError" in results[0].reason and session.connections == 0


# ---------------------------------------------------------------------- the drain
@pytest.fixture
def quiet_desk(tmp_path, backend):
    """A desk (SQLite and PostgreSQL) whose sender is not woken by new mail (the test drains
    by hand), with a real relay to a counting sink."""
    with counting_sink() as sink:
        desk = make_desk(tmp_path, backend.config_url, extra=f"[outbound]\nport = {sink.port}\nmax_per_minute = 0\n"
                                         "[loops]\nmax_new_tickets_per_sender_hour = 1000\n")
        desk.outbound.enqueue = lambda i: None
        delivery = tasks.huey.delivery()
        delivery.relay = Relay(RelaySettings(host="127.0.0.1", port=sink.port, timeout=5))
        delivery.batch = 7                                  # several batches on one session
        try:
            yield desk, delivery, sink
        finally:
            close_desk(desk)


def burst(desk, n: int) -> None:
    for i in range(n):
        desk.mail(new_mail(i, frm=f"user{i}@example.org"), mail_from=f"user{i}@example.org")


def test_a_drain_sends_a_burst_in_batches_on_one_connection(quiet_desk):
    desk, delivery, sink = quiet_desk
    burst(desk, 10)
    assert sink.handler.messages == [] and len(desk.rows()) == 30
    assert delivery.drain() == 30
    got = sink.handler.wait_for(30)
    ids = Counter(m[2].split(b"Message-ID: <", 1)[1].split(b">", 1)[0] for m in got)
    assert len(ids) == 30 and set(ids.values()) == {1}
    assert len(sink.handler.connections) == 1                 # 5 batches of up to 7, one session
    assert {v.status for v in desk.rows()} == {"sent"} and delivery.drain() == 0


def test_a_batch_out_of_lease_time_gives_the_rest_back_unsent(quiet_desk):
    desk, delivery, sink = quiet_desk
    delivery.lease_seconds = 0.0                              # every mail after a batch's first is "too late"
    burst(desk, 3)
    assert delivery.drain() == 9
    assert len(sink.handler.wait_for(9)) == 9 and len(sink.handler.connections) == 1
    assert {(v.status, v.attempts) for v in desk.rows()} == {("sent", 1)}      # given back uncounted, sent once


@pytest.mark.parametrize("journal", [True, False])
def test_a_crash_between_send_and_mark_sends_nothing_twice(quiet_desk, journal):
    desk, delivery, sink = quiet_desk
    if not journal:
        delivery.journal = None                               # the control: what the journal prevents
    burst(desk, 3)
    real = desk.store.outbox.record_and_claim

    def crash(*args, **kwargs):
        raise SystemExit("killed between the relay's 250 and the mark")
    desk.store.outbox.record_and_claim = crash
    with pytest.raises(SystemExit):
        delivery.drain()
    assert len(sink.handler.wait_for(7)) == 7                 # the first batch reached the relay
    assert sum(v.status == "sending" for v in desk.rows()) == 7
    desk.store.outbox.record_and_claim = real                 # "restarted"; the leases run out
    desk.clock.advance(seconds=delivery.lease_seconds + 1)
    desk.sweep()
    assert {v.status for v in desk.rows()} == {"sent"}
    ids = Counter(m[2].split(b"Message-ID: <", 1)[1].split(b">", 1)[0] for m in sink.handler.messages)
    assert len(ids) == 9
    if journal:
        assert set(ids.values()) == {1}                       # each Message-ID delivered once
        assert not list(delivery.journal.dir.glob("*.jsonl"))
    else:
        assert sorted(ids.values()) == [1, 1] + [2] * 7


def test_a_stored_batch_wakes_the_sender_once(quiet_desk):
    desk, delivery, sink = quiet_desk
    wakes: list = []
    desk.outbound.enqueue = wakes.append
    env = Envelope("x@example.org", ("support@example.com",), "smtp")
    bases = desk.app.spool.put_many([(new_mail(i, frm=f"user{i}@example.org"), env) for i in range(8)])
    outcomes = desk.app.worker.run_batch(set(bases))
    assert [o.result.outcome for o in outcomes] == ["created"] * 8 and len(desk.rows()) == 24
    assert len(wakes) == 1                                    # one wake-up for the batch's 24 rows
    assert delivery.drain() == 24 and len(sink.handler.connections) == 1


def hang_up(sink) -> None:
    """The relay closes every connection it has (as an idle timeout does)."""
    closed = threading.Event()
    sink.controller.loop.call_soon_threadsafe(lambda: ([sv.transport.close() for sv in sink.handler.servers
                                                        if sv.transport], closed.set()))
    assert closed.wait(5)


@pytest.mark.parametrize("how", ["kept", "closed", "421"])
def test_the_next_drain_reuses_the_session_or_reopens_one_the_relay_let_go(quiet_desk, how):
    desk, delivery, sink = quiet_desk
    burst(desk, 1)
    assert delivery.drain() == 3 and len(sink.handler.wait_for(3)) == 3
    if how == "closed":
        hang_up(sink)
    elif how == "421":
        sink.handler.idle_421 = True
    desk.mail(new_mail(99, frm="late@example.org"), mail_from="late@example.org")
    assert delivery.drain() == 3
    assert len(sink.handler.wait_for(6)) == 6 and {v.status for v in desk.rows()} == {"sent"}   # none deferred
    assert len(sink.handler.connections) == (1 if how == "kept" else 2)


def test_two_senders_draining_at_once_send_each_mail_once(quiet_desk):
    desk, delivery, sink = quiet_desk
    burst(desk, 12)
    go = threading.Barrier(2)
    counts: list[int] = []

    def sender() -> None:
        go.wait()
        counts.append(delivery.drain())
    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 36
    ids = Counter(m[2].split(b"Message-ID: <", 1)[1].split(b">", 1)[0] for m in sink.handler.wait_for(36))
    assert len(ids) == 36 and set(ids.values()) == {1}
    assert {(v.status, v.attempts) for v in desk.rows()} == {("sent", 1)}
