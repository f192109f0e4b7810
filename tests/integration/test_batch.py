"""Group commit: the worker's batches (Worker.run_batch over store.writing.WriteTx) through
the real spool, store and pipeline - one commit per batch, replies threaded into tickets
opened earlier in the same batch, a failing write rolled back and retried one by one, an
outage putting everything back uncounted, agent mail taken out of the batch in order, and
messages parsed ahead by helper processes."""
from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

import pytest
from sqlmodel import Session

from daemon.app import build_app
from daemon.config import load_config
from daemon.errors import ParseError, StoreUnavailable
from daemon.intake.parallel import ParseAhead
from daemon.model import Envelope
from daemon.pipeline.parse import parse
from store.writing import WriteTx
from tests.agentkit import agent_reply, reply_address, sign
from tests.integration.test_agents import desk  # noqa: F401  (fixture: a desk with agents and DKIM)
from tests.integration.test_agents import sent_to
from tests.conftest import write_site_config
from tests.integration.test_outbox import new_mail, reply_to

ENV = Envelope("ann@example.org", ("support@example.com",), "smtp", "127.0.0.1", "2026-03-02T09:00:00+00:00")
CLAIMING = 60.0          # run_batch claims for at most this long: ample on a loaded machine (a batch stays whole)


@dataclass
class Plain:
    """An app planning no mail: every commit counted is the store's own."""

    app: object

    @property
    def store(self):
        return self.app.store


@pytest.fixture
def plain(backend, tmp_path):
    app = build_app(load_config(str(write_site_config(tmp_path, db_url=backend.config_url))), outbound=False)
    yield Plain(app)
    app.close()


def conversation_mail(n_roots: int, replies_each: int) -> list[bytes]:
    """Roots first, then replies interleaved across conversations (each after its parent)."""
    out = [new_mail(i, subject=f"case {i}") for i in range(n_roots)]
    for k in range(replies_each):
        for i in range(n_roots):
            parent = f"m{i}.ann@example.org" if k == 0 else f"r{i * 100 + k - 1}.ann@example.org"
            out.append(reply_to(parent, i * 100 + k))
    return out


def spool(d, mails: list[bytes]) -> list[str]:
    return d.app.spool.put_many([(raw, ENV) for raw in mails])


def count_commits(monkeypatch) -> list:
    calls = []
    real = Session.commit
    monkeypatch.setattr(Session, "commit", lambda self: (calls.append(1), real(self))[1])
    return calls


def test_a_batch_is_one_commit_and_replies_thread_into_tickets_opened_in_it(plain, monkeypatch):
    bases = spool(plain, conversation_mail(5, 3))                # 5 roots + 15 replies
    commits = count_commits(monkeypatch)
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    assert len(outcomes) == 20 and {o.kind for o in outcomes} == {"stored"}
    assert len(commits) == 1                                      # group commit: one for the lot
    assert [o.result.outcome for o in outcomes].count("created") == 5
    rows = plain.store.list_tickets()
    assert len(rows) == 5 and {t.message_count for t in rows} == {4}
    assert plain.app.spool.pending_bases() == set()
    # the same messages again, in one batch: all recognised, nothing written twice
    again = spool(plain, conversation_mail(5, 3))
    assert {o.result.outcome for o in plain.app.worker.run_batch(seconds=CLAIMING, only=set(again))} == {"duplicate"}
    assert plain.store.counts() == {"tickets": 5, "messages": 20}


def test_a_duplicate_inside_one_batch_is_stored_once(plain):
    bases = spool(plain, [new_mail(1), new_mail(1), reply_to("m1.ann@example.org", 1)])
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    assert [o.result.outcome for o in outcomes] == ["created", "duplicate", "appended"]
    assert plain.store.counts() == {"tickets": 1, "messages": 2}


def test_a_failing_write_rolls_the_batch_back_and_each_message_is_handled_alone(plain, monkeypatch):
    bases = spool(plain, conversation_mail(3, 1))                 # m0 m1 m2 r0 r100 r200
    real = WriteTx.save_message

    def save_in(self, msg, *a, **kw):
        if msg.message_id == "r100.ann@example.org":
            raise RuntimeError("disk on fire")
        return real(self, msg, *a, **kw)
    monkeypatch.setattr(WriteTx, "save_message", save_in)
    commits = count_commits(monkeypatch)
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    kinds = {o.base: o.kind for o in outcomes}
    assert sorted(kinds.values()) == ["retry"] + ["stored"] * 5
    assert len(commits) >= 5                                      # one by one after the roll-back
    assert plain.store.counts() == {"tickets": 3, "messages": 5}
    [retry] = [b for b, k in kinds.items() if k == "retry"]
    assert retry in plain.app.spool.pending_bases()
    monkeypatch.setattr(WriteTx, "save_message", real)
    plain.app.worker._not_before.clear()                          # its retry delay is over
    again = plain.app.worker.run_batch(seconds=CLAIMING)
    assert [o.result.outcome for o in again] == ["appended"]
    assert plain.store.counts() == {"tickets": 3, "messages": 6}
    assert {t.message_count for t in plain.store.list_tickets()} == {2}


def test_a_database_outage_in_a_batch_puts_every_message_back_uncounted(plain, monkeypatch):
    bases = spool(plain, conversation_mail(4, 0))
    real, seen = WriteTx.save_message, []

    def save_in(self, msg, *a, **kw):
        seen.append(msg.message_id)
        if len(seen) == 3:
            raise StoreUnavailable("database unavailable: disk I/O error")
        return real(self, msg, *a, **kw)
    monkeypatch.setattr(WriteTx, "save_message", save_in)
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    assert [o.kind for o in outcomes] == ["retry"] * 4
    assert plain.store.counts() == {"tickets": 0, "messages": 0}  # the first two were rolled back too
    names = sorted(p.name for p in plain.app.spool.new.iterdir())
    assert len(names) == 4 and all(".a0" in n for n in names)     # attempts not counted
    monkeypatch.setattr(WriteTx, "save_message", real)
    plain.app.worker._not_before.clear()
    assert len(plain.app.worker.run_batch(seconds=CLAIMING)) == 4 and plain.store.counts() == {"tickets": 4, "messages": 4}


def test_unparseable_mail_in_a_batch_is_quarantined_and_the_rest_stored(plain):
    bases = spool(plain, [new_mail(1), b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, new_mail(2)])
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    assert sorted(o.kind for o in outcomes) == ["quarantined", "stored", "stored"]
    [q] = plain.store.quarantine_list()
    assert (q.stage, q.reason) == ("parse", "not_mail")


def test_mail_parsed_ahead_is_used_and_its_parse_errors_quarantined(plain):
    bases = spool(plain, [new_mail(1), new_mail(2)])
    ahead = replace(parse(new_mail(1)), subject="parsed by a helper")
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases), parsed={bases[0]: ahead,
                                                              bases[1]: ParseError("too_deep", "nested 99 levels")})
    assert sorted(o.kind for o in outcomes) == ["quarantined", "stored"]
    assert [t.subject for t in plain.store.list_tickets()] == ["parsed by a helper"]
    [q] = plain.store.quarantine_list()
    assert (q.stage, q.reason, q.detail) == ("parse", "too_deep", "nested 99 levels")


def test_a_failed_parsing_helper_leaves_its_messages_to_the_worker(plain):
    good, broken = Future(), Future()
    good.set_result([parse(new_mail(1)), ("error", "not_mail", "OLE2")])
    broken.set_exception(BrokenProcessPool("a helper died"))
    got = ParseAhead.collect(["b0", "b1", "b2", "b3"], [(0, good), (2, broken)])
    assert set(got) == {"b0", "b1"} and isinstance(got["b1"], ParseError) and got["b1"].reason == "not_mail"
    bases = spool(plain, [new_mail(1), new_mail(2)])
    outcomes = plain.app.worker.run_batch(seconds=CLAIMING, only=set(bases), parsed={})           # nothing ahead: parsed here
    assert [o.kind for o in outcomes] == ["stored", "stored"]


def test_agent_mail_in_a_batch_is_handled_on_its_own_and_in_order(desk):  # noqa: F811
    first = desk.app.worker.process(new_mail(1), ENV)                        # HD-1, Ana is notified
    assert first.outcome == "created"
    notice = [raw for _, r, raw in desk.relay.sent if "ana@example.com" in r][0]
    answer = sign(agent_reply(notice, "Hello Ann,\nplease restart the printer.\n\nRegards, Ana"),
                  "example.com", desk.pem)
    agent_env = Envelope("ana@example.com", (reply_address(notice),), "smtp", "198.51.100.7",
                         desk.clock().isoformat())
    bases = desk.app.spool.put_many([(new_mail(2, subject="VPN down"), ENV), (answer, agent_env),
                                     (reply_to("m1.ann@example.org", 7), ENV)])
    outcomes = desk.app.worker.run_batch(seconds=CLAIMING, only=set(bases))
    assert [o.result.outcome for o in outcomes] == ["created", "agent:acted", "appended"]
    messages = desk.store.ticket_detail(1).messages
    assert [(m.direction, m.from_addr) for m in messages] == [
        ("in", "ann@example.org"), ("out", "ana@example.com"), ("in", "ann@example.org")]
    assert any("please restart the printer" in str(p.get_body(("plain",)).get_content())
               for p in sent_to(desk, "ann@example.org"))


def test_an_import_goes_on_when_its_parsing_helper_is_killed(plain, tmp_path, caplog):
    """SIGKILL the forked helper between batches: the batch it held and every later one are
    parsed by the importing process itself; every message is stored once."""
    import os
    import signal

    from daemon.intake.ingest import ingest
    from daemon.pipeline.parse import DEFAULT_LIMITS
    box = tmp_path / "many.mbox"
    with open(box, "wb") as fh:
        for i in range(450):
            fh.write(b"From x@example.org Mon Mar  2 08:00:00 2026\n" + new_mail(i, subject=f"case {i}")
                     .replace(b"\r\n", b"\n") + b"\n")
    helpers = ParseAhead(DEFAULT_LIMITS, 1)
    try:
        [pid] = list(helpers.pool._processes)
        real_submit = helpers.submit

        def submit_then_kill(items):
            jobs = real_submit(items)
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)             # dies holding (or before) this batch
            return jobs
        helpers.submit = submit_then_kill
        assert ingest(plain.app, [str(box)], helpers=helpers) == 0
    finally:
        helpers.close()
    assert plain.store.counts() == {"tickets": 450, "messages": 450}
    assert plain.app.spool.pending_bases() == set()
    assert "parsing in this process" in caplog.text or "parsing its messages here" in caplog.text
