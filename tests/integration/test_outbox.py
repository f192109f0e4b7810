"""The outbox contract, written once and run on SQLite and PostgreSQL: mail planned in the
ticket transaction, leases, retries, give-up, bounces, loops (reliability.md 0.4, D, E);
and huey on SQLite and Redis delivering to a real SMTP sink. `Desk` (the harness: the
real spool worker, store, rules, templates and planner, huey immediate, a settable clock
and a scriptable relay) is shared with test_outbox_loop.py."""
from __future__ import annotations

import email
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from sqlmodel import Session, select

from daemon import tasks, tokens
from daemon.app import build_app, start_consumer
from daemon.config import load_config
from daemon.mailer import RcptResult
from daemon.model import Envelope, MailEffects, OutgoingMail
from daemon.outbound import Outbound
from store.outbox import MailSuppression
from store.writing import Saved
from tests.conftest import REDIS_URL, missing, write_site_config
from tests.integration.test_outbox_relay import Sink

START = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


class FakeRelay:
    """Accepts everything unless `answer(rcpts)` says otherwise; records every attempt."""

    def __init__(self):
        self.sent: list[tuple[str, tuple[str, ...], bytes]] = []
        self.answer = None

    def send(self, mail_from, rcpts, raw):
        results = self.answer(list(rcpts)) if self.answer else [RcptResult(r, "sent", 250) for r in rcpts]
        self.sent.append((mail_from, tuple(rcpts), raw))
        return results

    def session(self) -> "FakeRelay":              # one "session" is the relay itself
        return self

    def __enter__(self) -> "FakeRelay":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Desk:
    app: object
    outbound: Outbound
    clock: Clock
    relay: FakeRelay

    @property
    def store(self):
        return self.app.store

    def mail(self, raw: bytes, *, mail_from: str = "ann@example.org", rcpt: tuple = ("support@example.com",)):
        env = Envelope(mail_from, rcpt, "smtp", "127.0.0.1", self.clock().isoformat())
        return self.app.worker.process(raw, env)

    def rows(self, **kw):
        return self.store.outbox.rows(**kw)

    def events(self, ticket_id: int) -> list[str]:
        return [e.kind for e in self.store.ticket_detail(ticket_id).events]

    def sweep(self) -> int:
        return tasks.huey.delivery().sweep()


def make_desk(tmp_path: Path, db_url: str = "", extra: str = "") -> Desk:
    cfg = load_config(str(write_site_config(tmp_path, '[queue]\nbackend = "immediate"\n' + extra, db_url=db_url)))
    clock = Clock()
    app = build_app(cfg, clock=clock)
    outbound = app.mail.outbound
    relay = FakeRelay()
    tasks.huey.delivery().relay = relay
    return Desk(app, outbound, clock, relay)


def close_desk(desk: Desk) -> None:
    desk.app.close()
    tasks.huey.bind(None)
    tasks.huey.use(tasks.MemoryStorage, True)


@pytest.fixture
def desk(backend, tmp_path):
    d = make_desk(tmp_path, backend.config_url, '[outbound]\nretry_first_seconds = 300.0\nretry_days = 1.0\n')
    yield d
    close_desk(d)


def new_mail(n: int = 1, frm: str = "ann@example.org", subject: str = "Printer jams", extra: str = "") -> bytes:
    return (f"From: Ann <{frm}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <m{n}.{frm}>\r\n{extra}\r\nIt jams on every page.\r\n").encode()


def reply_to(parent_id: str, n: int, frm: str = "ann@example.org", extra: str = "") -> bytes:
    return (f"From: Ann <{frm}>\r\nTo: support@example.com\r\nSubject: Re: [HD-1] Printer jams\r\n"
            f"Message-ID: <r{n}.{frm}>\r\nIn-Reply-To: <{parent_id}>\r\nReferences: <{parent_id}>\r\n{extra}\r\n"
            f"More detail {n}.\r\n").encode()


def dsn(to: str, original_id: str, rcpt: str = "ann@example.org", action: str = "failed",
        status: str = "5.1.1") -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.org\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn-{hashlib.sha256((to + original_id + action).encode()).hexdigest()[:12]}@mx.example.org>"
            f"\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n"
            f"--BB\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"--BB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
            f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
            f"--BB\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}>\r\n"
            f"From: support@example.com\r\nSubject: [HD-1] Printer jams\r\n--BB--\r\n").encode()


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


# ---------------------------------------------------------------------- planning in the transaction
def test_new_ticket_queues_ack_and_notifications_in_its_transaction(desk):
    r = desk.mail(new_mail())
    assert r.outcome == "created" and len(r.outbox_ids) == 3
    rows = desk.rows(ticket_id=r.ticket_id)
    assert sorted((v.kind, v.recipients[0][0], v.status) for v in rows) == [
        ("ack", "ann@example.org", "sent"), ("agent_new", "ana@example.com", "sent"),
        ("agent_new", "ben@example.com", "sent")]
    assert [x[1] for x in desk.relay.sent] == [("ann@example.org",), ("ana@example.com",), ("ben@example.com",)]
    assert {"mail_queued", "mail_sent"} <= set(desk.events(r.ticket_id))
    ack = next(v for v in rows if v.kind == "ack")
    assert parsed(ack.raw)["Message-ID"] == f"<{ack.message_id}>"
    # the requester answers the acknowledgement: threaded by our Message-ID, agents hear of it
    again = desk.mail(reply_to(ack.message_id, 1))
    assert again.outcome == "appended" and again.ticket_id == r.ticket_id
    assert sorted(v.kind for v in desk.rows(ticket_id=r.ticket_id)).count("agent_message") == 2
    assert sum(v.kind == "ack" for v in desk.rows()) == 1                     # at most one ack per ticket


def test_a_replayed_message_sends_nothing_twice(desk):
    desk.mail(new_mail())
    assert desk.mail(new_mail()).outcome == "duplicate"
    assert len(desk.rows()) == 3 and len(desk.relay.sent) == 3


def save_planned(desk, msg, raw, now, plan):
    """Save a new-ticket message and the mail `plan(outcome, ticket, None)` returns in one
    transaction, as the worker does (store.writing.WriteTx)."""
    from daemon.model import Routing, ThreadDecision
    with desk.store.write() as tx:
        r = tx.save_message(msg, Envelope("a@x", ()), raw, hashlib.sha256(raw).hexdigest(),
                            ThreadDecision("new", None, "t"), Routing("incident", "general", "P3"), now)
        applied = tx.apply_mail(plan(r.outcome, tx.ticket(r.ticket_id), None), r.ticket_id, now)
        tx.commit()
    return Saved(r.outcome, r.ticket_id, r.message_pk, r.message_id, outbox_ids=applied.outbox_ids,
                 alerts=applied.alerts)


def test_a_failing_plan_rolls_back_the_ticket_too(desk):
    def bad_plan(outcome, ticket, ledger):
        raise RuntimeError("planning exploded")
    from daemon.pipeline.parse import parse
    from daemon.model import Routing, ThreadDecision
    raw = new_mail(5)
    msg = parse(raw)
    with pytest.raises(RuntimeError):
        save_planned(desk, msg, raw, START, bad_plan)
    assert desk.store.counts() == {"tickets": 0, "messages": 0} and desk.rows() == []


def test_duplicate_message_id_in_the_outbox_rolls_back(desk):
    r = desk.mail(new_mail())
    taken = desk.rows()[0].message_id
    from daemon.pipeline.parse import parse
    from daemon.model import Routing, ThreadDecision

    def clash(outcome, ticket, ledger):
        return MailEffects(mails=(OutgoingMail(ticket.id, "ack", "requester", "t", taken, "00" * 8, "b@example.com",
                                               ("x@example.org",), b"x"),))
    raw = new_mail(6)
    with pytest.raises(Exception):
        save_planned(desk, parse(raw), raw, START, clash)
    assert desk.store.counts()["tickets"] == 1 and len(desk.rows()) == 3 and r.ticket_id == 1


# ---------------------------------------------------------------------- sending
def test_lease_claim_and_a_stale_sender_losing_its_lease(desk):
    desk.relay.answer = lambda rcpts: [RcptResult(r, "temp", 451, "later") for r in rcpts]
    r = desk.mail(new_mail())
    ack_id = next(v.id for v in desk.rows() if v.kind == "ack")
    outbox = desk.store.outbox
    assert outbox.claim(ack_id, desk.clock(), 60) is None                    # not due yet (backoff)
    desk.clock.advance(minutes=5)
    first = outbox.claim(ack_id, desk.clock(), 60)
    assert first is not None and outbox.claim(ack_id, desk.clock(), 60) is None   # held
    desk.clock.advance(seconds=61)                                           # the holder died
    second = outbox.claim(ack_id, desk.clock(), 60)
    assert second is not None and second.lease_token != first.lease_token and second.attempts == 3
    assert outbox.record(first, [], desk.clock(), None) is None               # the stale sender loses
    assert r.ticket_id and outbox.get(ack_id).status == "sending"


def test_case_41_partial_acceptance_never_resends_accepted(desk):
    def two(outcome, ticket, ledger):
        nonce = b"\x01" * 8
        mid = tokens.message_id(desk.outbound.ring, "notice", ticket.id, nonce, "example.com")
        return MailEffects(mails=(OutgoingMail(ticket.id, "reopen", "requester", "t", mid, nonce.hex(),
                                               tokens.bounce_address(desk.outbound.ring, "support@example.com", nonce),
                                               ("a@example.org", "b@example.org"), b"Subject: x\r\n\r\nx\r\n"),))
    from daemon.pipeline.parse import parse
    from daemon.model import Routing, ThreadDecision
    raw = new_mail(7)
    res = save_planned(desk, parse(raw), raw, desk.clock(), two)
    desk.relay.answer = lambda rcpts: [RcptResult(r, "sent", 250) if r.startswith("a")
                                       else RcptResult(r, "temp", 451, "grey") for r in rcpts]
    tasks.send_outbox(res.outbox_ids[0])
    view = desk.store.outbox.get(res.outbox_ids[0])
    assert view.status == "pending" and view.recipients == (("a@example.org", "sent", 250),
                                                            ("b@example.org", "pending", 451))
    desk.relay.answer = None
    desk.clock.advance(minutes=6)
    assert desk.sweep() == 1
    assert desk.relay.sent[-1][1] == ("b@example.org",)                     # only the one still open
    assert desk.store.outbox.get(res.outbox_ids[0]).status == "sent"


def test_case_39_4xx_backs_off_then_gives_up_and_records_it(desk):
    desk.relay.answer = lambda rcpts: [RcptResult(r, "temp", 451, "4.7.1 greylisted") for r in rcpts]
    r = desk.mail(new_mail())
    ack_id = next(v.id for v in desk.rows() if v.kind == "ack")
    attempts_at = []
    for _ in range(200):                                  # a day of virtual time, one step per minute
        desk.clock.advance(minutes=10)
        before = len(desk.relay.sent)
        desk.sweep()
        if any(x[1] == ("ann@example.org",) for x in desk.relay.sent[before:]):
            attempts_at.append(desk.clock())
        if desk.store.outbox.get(ack_id).status != "pending":
            break
    view = desk.store.outbox.get(ack_id)
    assert view.status == "failed" and view.recipients[0][1] == "failed" and "gave up after 1 days" in view.last_error
    gaps = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:])]
    assert gaps[0] >= 600 and max(gaps) <= 3600 + 600 and gaps == sorted(gaps)   # backoff, capped
    assert desk.clock() - START <= timedelta(days=1, hours=1)
    events = desk.events(r.ticket_id)
    assert events.count("mail_deferred") == 3 and "mail_failed" in events      # one deferral event per mail


def test_case_40_5xx_no_retry_and_recipient_suppressed(desk):
    desk.relay.answer = lambda rcpts: [RcptResult(r, "perm", 550, "5.1.1 no such user") if r == "ann@example.org"
                                       else RcptResult(r, "sent", 250) for r in rcpts]
    r = desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    assert ack.status == "failed" and ack.recipients == (("ann@example.org", "failed", 550),)
    n = len(desk.relay.sent)
    desk.clock.advance(hours=2)
    assert desk.sweep() == 0 and len(desk.relay.sent) == n                 # never retried
    second = desk.mail(new_mail(2, subject="Another problem"))
    assert not any(v.kind == "ack" for v in desk.rows(ticket_id=second.ticket_id))
    assert "mail_held" in desk.events(second.ticket_id) and "mail_failed" in desk.events(r.ticket_id)
    desk.clock.advance(days=8)                                               # suppression ends
    third = desk.mail(new_mail(3, subject="Third"))
    assert any(v.kind == "ack" for v in desk.rows(ticket_id=third.ticket_id))


def test_sweep_recovers_a_mail_whose_sender_died(desk):
    desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    with Session(desk.store.engine) as s:                    # rewind: as if the sender died mid-send
        from store.outbox import Outbox, OutboxRecipient
        row = s.get(Outbox, ack.id)
        row.status, row.lease_until, row.lease_token = "sending", desk.clock() + timedelta(seconds=120), "dead"
        s.add(row)
        for rc in s.exec(select(OutboxRecipient).where(OutboxRecipient.outbox_id == ack.id)):
            rc.status = "pending"
            s.add(rc)
        s.commit()
    sent_before = len(desk.relay.sent)
    assert desk.sweep() == 0                                  # lease still valid
    desk.clock.advance(seconds=121)
    assert desk.sweep() == 1
    again = desk.relay.sent[sent_before:]
    assert len(again) == 1 and again[0][2] == ack.raw          # same bytes, same Message-ID
    assert desk.store.outbox.get(ack.id).status == "sent"


def test_sweep_picks_up_rows_huey_never_delivered(desk):
    desk.outbound.enqueue = lambda i: None                    # huey lost the task
    desk.mail(new_mail())
    assert desk.relay.sent == [] and desk.sweep() == 0       # within the grace period
    desk.clock.advance(seconds=121)
    assert desk.sweep() == 3 and len(desk.relay.sent) == 3


# ---------------------------------------------------------------------- bounces and loops
def test_case_52_dsn_to_our_bounce_address_marks_the_recipient(desk):
    r = desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    n_rows = len(desk.rows())
    b = desk.mail(dsn(ack.mail_from, "unrelated@elsewhere"), mail_from="", rcpt=(ack.mail_from,))
    assert b.outcome == "bounce" and b.ticket_id == r.ticket_id and b.outbox_ids == ()
    assert desk.store.counts()["tickets"] == 1 and len(desk.rows()) == n_rows
    assert desk.store.outbox.get(ack.id).recipients[0][1] == "bounced"
    with Session(desk.store.engine) as s:
        assert s.get(MailSuppression, "ann@example.org") is not None
    detail = desk.store.ticket_detail(r.ticket_id)
    assert "mail_bounced" in [e.kind for e in detail.events]
    assert detail.messages[-1].visibility == "internal" and "outbox #" in detail.messages[-1].thread_evidence


def test_dsn_matched_by_the_original_message_id(desk):
    r = desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    b = desk.mail(dsn("support@example.com", ack.message_id), mail_from="")
    assert b.outcome == "bounce" and b.ticket_id == r.ticket_id
    assert desk.store.outbox.get(ack.id).recipients[0][1] == "bounced"
    forged = ack.message_id.replace(ack.message_id[10], "a" if ack.message_id[10] != "a" else "b", 1)
    assert tokens.read_message_id(desk.outbound.ring, forged) is None


def test_case_53_delayed_dsn_is_recorded_only(desk):
    r = desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    desk.mail(dsn(ack.mail_from, ack.message_id, action="delayed", status="4.4.7"), mail_from="",
              rcpt=(ack.mail_from,))
    assert desk.store.outbox.get(ack.id).recipients[0][1] == "sent"
    assert "mail_delayed" in desk.events(r.ticket_id) and len(desk.rows()) == 3


def test_case_58_agent_notification_bounce_notifies_nobody(desk):
    r = desk.mail(new_mail())
    note = next(v for v in desk.rows() if v.recipients[0][0] == "ana@example.com")
    sent = len(desk.relay.sent)
    desk.mail(dsn(note.mail_from, note.message_id, rcpt="ana@example.com"), mail_from="", rcpt=(note.mail_from,))
    assert len(desk.relay.sent) == sent and len(desk.rows()) == 3
    assert desk.store.ticket_detail(r.ticket_id).ticket.status == "new"


def test_case_55_our_own_mail_coming_back_triggers_nothing_and_alerts_once(desk):
    r = desk.mail(new_mail())
    ack = next(v for v in desk.rows() if v.kind == "ack")
    back = desk.mail(ack.raw, mail_from="support@example.com")
    assert back.outcome == "appended" and back.ticket_id == r.ticket_id and back.outbox_ids == ()
    assert desk.store.ticket_detail(r.ticket_id).messages[-1].machine_kind == "loop"
    assert len(back.alerts) == 1
    again = desk.mail(b"X-Forwarded: again\r\n" + ack.raw, mail_from="support@example.com")
    assert again.outbox_ids == () and again.alerts == ()                       # one alert, not a storm
    assert desk.events(r.ticket_id).count("alert") == 1 and len(desk.rows()) == 3


def test_a_loop_header_alone_marks_our_mail(desk):
    marker = tokens.loop_marker("support@example.com")
    r = desk.mail(new_mail(9, extra=f"X-Loop: {marker}\r\n"))
    assert r.outbox_ids == () and desk.store.ticket_detail(r.ticket_id).messages[0].machine_kind == "loop"


def test_case_59_no_reply_requester_gets_no_acknowledgement(desk):
    r = desk.mail(new_mail(frm="no-reply@vendor.example"), mail_from="no-reply@vendor.example")
    assert r.outcome == "created" and {v.kind for v in desk.rows(ticket_id=r.ticket_id)} == {"agent_new"}


def test_case_84_87_html_mail_is_quoted_as_escaped_text(desk):
    raw = (b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: html\r\nMessage-ID: <h1@x.org>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Help <script>alert(1)</script>"
           b"<img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">click</a>"
           b"<svg><image href=\"http://evil.test/t.png\"/></svg><div style=\"background:url(http://evil.test/c)\">"
           b"</div></p>\r\n")
    r = desk.mail(raw)
    ack = parsed(next(v for v in desk.rows(ticket_id=r.ticket_id) if v.kind == "ack").raw)
    html = ack.get_body(("html",)).get_content()
    for bad in ("<script", "<img", "<svg", "<image", "href=\"javascript", "url(http", "<a "):
        assert bad not in html
    assert "Help" in ack.get_body(("plain",)).get_content()


def test_resolve_notice_and_reopen(desk):
    r = desk.mail(new_mail())
    res = desk.outbound.resolve(r.ticket_id, why="fixed the printer")
    assert res.outcome == "resolved" and [desk.store.outbox.get(i).kind for i in res.outbox_ids] == ["resolve"]
    notice = desk.store.outbox.get(res.outbox_ids[0])
    assert desk.outbound.resolve(r.ticket_id).outcome == "unchanged" and len(desk.rows(ticket_id=r.ticket_id)) == 4
    assert "reopens the" in parsed(notice.raw).get_body(("plain",)).get_content()
    again = desk.mail(reply_to(notice.message_id, 2))
    assert again.outcome == "reopened"
    assert sorted(desk.store.outbox.get(i).kind for i in again.outbox_ids) == ["agent_message", "agent_message",
                                                                                "reopen"]


def test_requester_language_is_remembered_for_later_mail(desk):
    r = desk.mail(new_mail(extra="Content-Language: de-DE\r\n"))
    res = desk.outbound.resolve(r.ticket_id)
    notice = parsed(desk.store.outbox.get(res.outbox_ids[0]).raw)
    assert notice["Content-Language"] == "de" and "Gelöst" in notice["Subject"]


# ---------------------------------------------------------------------- huey on real backends
@pytest.fixture(params=["sqlite", "redis"])
def queue_backend(request):
    if request.param == "redis":
        try:
            import redis
            redis.Redis.from_url(REDIS_URL).ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "no server"
            missing(f"Redis not reachable at {REDIS_URL}: {exc.__class__.__name__}")
        return f'[queue]\nbackend = "redis"\nurl = "{REDIS_URL}"\nsweep_seconds = 0.5\n'
    return '[queue]\nbackend = "sqlite"\nsweep_seconds = 0.5\n'


def test_huey_backend_delivers_to_a_real_relay(tmp_path, queue_backend):
    with Sink() as sink:
        cfg = load_config(str(write_site_config(tmp_path, f"{queue_backend}[outbound]\nport = {sink.port}\n")))
        app = build_app(cfg)
        try:
            tasks.huey.storage.flush_all()
            stop = start_consumer(app)
            try:
                r = app.worker.process(new_mail(), Envelope("ann@example.org", ("support@example.com",), "smtp"))
                got = sink.handler.wait_for(3, timeout=30)
                assert sorted(x[1] for x in got) == [("ana@example.com",), ("ann@example.org",), ("ben@example.com",)]
                ack = next(x for x in got if x[1] == ("ann@example.org",))
                assert ack[0].startswith("support+bounce-") and parsed(ack[2])["Auto-Submitted"] == "auto-replied"
                assert ack[2] == next(v.raw for v in app.store.outbox.rows(ticket_id=r.ticket_id) if v.kind == "ack")
            finally:
                stop()
        finally:
            tasks.huey.storage.flush_all()
            close_desk(Desk(app, None, Clock(), FakeRelay()))


def test_helpdesk_worker_process_sends_and_stops_on_sigterm(tmp_path, queue_backend):
    """run_worker (`helpdesk worker`) in its own process consumes what serve/ingest enqueued."""
    import os
    import signal
    import subprocess
    import sys
    with Sink() as sink:
        cfg_path = write_site_config(tmp_path, f"{queue_backend}[outbound]\nport = {sink.port}\n")
        app = build_app(load_config(str(cfg_path)))
        try:
            tasks.huey.storage.flush_all()
            app.worker.process(new_mail(), Envelope("ann@example.org", ("support@example.com",), "smtp"))
            assert sink.handler.messages == []                    # nobody consumes yet
            code = ("import sys; from daemon.config import load_config; "
                    "from daemon.app import build_app, run_queue_worker; "
                    "sys.exit(run_queue_worker(build_app(load_config(sys.argv[1]))))")
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
            proc = subprocess.Popen([sys.executable, "-c", code, str(cfg_path)], env=env, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                got = sink.handler.wait_for(3, timeout=60)
                assert sorted(x[1][0] for x in got) == ["ana@example.com", "ann@example.org", "ben@example.com"]
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()[-2000:]
            assert {v.status for v in app.store.outbox.rows()} == {"sent"}
        finally:
            tasks.huey.storage.flush_all()
            close_desk(Desk(app, None, Clock(), FakeRelay()))
