"""Message identity against hostile or sloppy senders (reliability cases 7 and 8), through
the real worker and store (SQLite here; the store contract runs on PostgreSQL elsewhere)."""
from __future__ import annotations

from sqlmodel import Session, select

from daemon.model import Envelope
from store import tables as m

ENV = Envelope("ann@example.org", ("support@example.com",), "smtp")


def rows(app) -> list[tuple[str, bool]]:
    with Session(app.store.engine) as s:
        return [(r.message_id, r.message_id_reuse) for r in s.exec(select(m.Message).order_by(m.Message.id))]


def test_same_message_id_same_bytes_is_one_article_other_bytes_a_flagged_second(app):
    first = (b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\n"
             b"Message-ID: <same@example.org>\r\n\r\nIt jams.\r\n")
    other = first.replace(b"It jams.", b"Something else entirely.")
    assert app.worker.process(first, ENV).outcome != "duplicate"
    assert app.worker.process(first, ENV).outcome == "duplicate"          # a replay: one article
    assert app.worker.process(other, ENV).outcome != "duplicate"          # Message-ID is a hint, not a key
    assert rows(app) == [("same@example.org", False), ("same@example.org", True)]


def test_two_distinct_mails_without_message_id_and_same_headers_stay_two(app):
    head = (b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\n"
            b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\n")
    for body in (b"first text\r\n", b"second text\r\n"):
        assert app.worker.process(head + body, ENV).outcome != "duplicate"
    assert app.worker.process(head + b"first text\r\n", ENV).outcome == "duplicate"   # its replay is not a third
    ids = [mid for mid, _ in rows(app)]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(ids)
