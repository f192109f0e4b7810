"""compose (daemon.pipeline.compose) writes the header block itself: it must give the very bytes the email
package (EmailMessage, policy SMTP) gives for the same values, and parse back to them.

`reference` is the previous composer, kept here as the oracle. Both draw the multipart
boundary from `random`, so seeding it before each call makes the outputs comparable."""
from __future__ import annotations

import email
import random
from datetime import datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from daemon.model import Address
from daemon.pipeline.addresses import sanitize
from daemon.pipeline.compose import (MAX_SUBJECT, POLICY, UTF8_POLICY, Headers, _ids, compose, mail_address,
                                     needs_utf8, outbound_address)
from daemon.pipeline.render import Rendered

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def _mailbox(name: str, email: str, utf8: bool = False) -> HeaderAddress:
    addr = mail_address(email) if utf8 else outbound_address(email)
    if addr is None:
        raise ValueError(f"refusing unusable address {sanitize(email)[:80]!r}")
    local, _, domain = addr.rpartition("@")
    return HeaderAddress(display_name=sanitize(name)[:100], username=local, domain=domain)


def reference(h: Headers, body: Rendered) -> bytes:
    utf8 = needs_utf8(h)
    pol = UTF8_POLICY if utf8 else POLICY
    msg = EmailMessage(policy=pol)
    msg["From"] = _mailbox(h.from_name, h.from_email, utf8)
    msg["To"] = [_mailbox(a.name, a.email, utf8) for a in h.to]
    subject = sanitize(h.subject)
    msg["Subject"] = subject if len(subject) <= MAX_SUBJECT else subject[:MAX_SUBJECT - 1] + "…"
    msg["Date"] = format_datetime(h.date)
    msg["Message-ID"] = f"<{h.message_id}>"
    parent = _ids((h.in_reply_to,) if h.in_reply_to else ())
    refs = _ids(h.references)
    if parent:
        msg["In-Reply-To"] = f"<{parent[0]}>"
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if h.reply_to:
        msg["Reply-To"] = _mailbox("", h.reply_to, utf8)
    msg["Auto-Submitted"] = h.auto
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = sanitize(h.loop)
    if h.ticket_ref:
        msg["X-Helpdesk-Ticket"] = sanitize(h.ticket_ref)
    msg.set_content(body.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if body.html is not None:
        msg.add_alternative(body.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if h.lang:
        msg["Content-Language"] = sanitize(h.lang)
    return msg.as_bytes(policy=pol)


def outcome(fn, h: Headers, body: Rendered, seed: int):
    random.seed(seed)
    try:
        return fn(h, body)
    except Exception as exc:                 # noqa: BLE001 - both must fail alike
        return (exc.__class__, str(exc))


def headers(**kw) -> Headers:
    return Headers(**{
        "from_name": "Example Service Desk", "from_email": "support@example.com",
        "to": (Address("", "ann@example.org"),), "subject": "[HD-42] Printer", "message_id": "hd.abc@example.com",
        "date": NOW, "in_reply_to": "orig@example.org", "references": ("orig@example.org",), "reply_to": None,
        "auto": "auto-replied", "loop": "support@example.com helpdeskd/0123456789ab", "ticket_ref": "HD-42",
        "lang": None, **kw})


TEXT = Rendered("s", "Hello,\n\nyour ticket is HD-42. Grüße = € 日本語\n" + "long line " * 20 + "\n", None, "t", None)
HTML = Rendered("s", TEXT.text, "<p>Hello <b>Ann</b> – €</p>\n" + "<span>x</span>" * 30 + "\n", "t", "de")
LONG_REFS = tuple(f"msg-{i}-{'x' * (i % 30)}@example.org" for i in range(40))

CASES = {
    "plain ack": (headers(), TEXT),
    "html alternative": (headers(lang="de"), HTML),
    "agent from quoted": (headers(from_name="ann@example.org via Example Service Desk",
                                  to=(Address("Ana Lima", "ana@example.com"),), reply_to="support+tok@example.com"),
                          HTML),
    "non-ascii names": (headers(from_name="Jürgen Müller via Servicedesk Ölwerke",
                                to=(Address("Zoë Ðoe", "z@x.test"),)), TEXT),
    "non-ascii subject": (headers(subject="[HD-42] Überweisung Fehler – Konto 17"), TEXT),
    "long ascii subject": (headers(subject="[HD-42] " + "printer jams again " * 9), TEXT),
    "long non-ascii subject": (headers(subject="Drucker druckt nur Hieroglyphen: äöü ß € 日本語 " * 8), TEXT),
    "very long word subject": (headers(subject="[HD-42] " + "x" * 120 + " end"), TEXT),
    "subject of 77": (headers(subject="y" * 70 + " " + "z" * 6), TEXT),
    "encoded-word look-alike": (headers(subject="Hi =?utf-8?q?x=0ABcc:_x@evil.test?= there",
                                        from_name="=?utf-8?q?Evil?= name"), TEXT),
    "line breaks": (headers(subject="Hi\r\nBcc: x@evil.test\u2028y\x85z", from_name="Evil\r\nBcc: x@evil.test"), TEXT),
    "long references": (headers(references=LONG_REFS, in_reply_to=LONG_REFS[-1]), TEXT),
    "hostile references": (headers(references=("ok@example.org", "bad id@x", "<x>\r\nBcc: y@evil.test",
                                                "a" * 600 + "@x", "=?utf-8?q?a?=@x")), TEXT),
    "specials in names": (headers(from_name='Ann "the boss" (IT) \\ <x>, Inc.',
                                  to=(Address("O'Brien, Pat", "p@x.test"),)), TEXT),
    "long display name": (headers(from_name="A" * 30 + " " + "B" * 30 + " via Example Service Desk"), TEXT),
    "idn address": (headers(to=(Address("Bü", "ann@bücher.example"),)), TEXT),
    "bad address": (headers(to=(Address("", "a@b.test\r\nBcc: x@evil.test"),)), TEXT),
    "no recipients": (headers(to=()), TEXT),
    "two recipients": (headers(to=(Address("Ann", "ann@example.org"), Address("Bob Smith", "bob@example.org"))),
                       TEXT),
    "empty text": (headers(), Rendered("s", "", "", "t", None)),
    "crlf text": (headers(), Rendered("s", "a\r\nb\rc\n\n  trailing space   \nfrom x\n.\n", None, "t", None)),
    "content language": (headers(lang="pt-BR", ticket_ref=""), TEXT),
    "long message id": (headers(message_id="hd." + "a" * 60 + "@" + "very-long-domain." * 3 + "example"), TEXT),
    "naive date": (headers(date=datetime(2026, 3, 2, 9, 30)), TEXT),
    "other zone": (headers(date=datetime(2026, 3, 2, 9, 30, 5, 123, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
                   TEXT),
    "auto no": (headers(auto="no", loop=""), TEXT),
    "odd zone": (headers(date=datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(seconds=90)))), TEXT),
    "message id that wraps": (headers(message_id="hd." + "a" * 52 + "@example.com"), TEXT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_bytes_as_the_email_package(case):
    h, body = CASES[case]
    assert outcome(compose, h, body, 7) == outcome(reference, h, body, 7)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def contents(m) -> list[str]:
    return [p.get_content() for p in m.walk() if not p.is_multipart()]


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "bad address"))
def test_parses_back_to_the_same_values(case):
    h, body = CASES[case]
    random.seed(3)
    new = parsed(compose(h, body))
    random.seed(3)
    old = parsed(reference(h, body))
    assert [(k, str(v)) for k, v in new.items()] == [(k, str(v)) for k, v in old.items()]
    assert contents(new) == contents(old)
    subject = sanitize(h.subject)
    expected = subject if len(subject) <= MAX_SUBJECT else subject[:MAX_SUBJECT - 1] + "…"
    assert "=?" in subject or new["Subject"].strip() == expected
    assert new["From"].addresses[0].addr_spec == h.from_email
    assert "=?" in h.from_name or new["From"].addresses[0].display_name == sanitize(h.from_name)[:100].strip()
    assert [a.addr_spec for a in new["To"].addresses] == [outbound_address(a.email) for a in h.to]
    assert new["Message-ID"].strip() == f"<{h.message_id}>" and new["Content-Language"] == (h.lang or None)
    assert lf(new.get_body(("plain",)).get_content()) == "\n".join(body.text.splitlines()) + "\n"
    if body.html is not None:
        assert new.get_content_type() == "multipart/alternative"
        assert lf(new.get_body(("html",)).get_content()) == "\n".join(body.html.splitlines()) + "\n"
    head = compose(h, body).split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"Message-ID:"))


ALPHABET = (["a", "b", "Z", "0", "9", " ", " ", " ", "  ", "\t", ".", ",", "@", "<", ">", "(", ")", '"', "\\", ":",
             ";", "[", "]", "=", "?", "=?", "?=", "'", "-", "_", "!", "#", "ä", "€", "日", "\U0001F600", "\r", "\n",
             "\u2028", "\x85", "\x00", "\x7f"] + ["word", "Printer", "x" * 40, "y" * 80])


ASCII = [chr(c) for c in range(0x21, 0x7f)] + [" "] * 12 + ["=?", "word", "x" * 30, "y" * 77]


def fuzz_text(rng: random.Random, most: int) -> str:
    """Mostly printable ASCII (the written-directly path), sometimes anything."""
    alphabet = ALPHABET if rng.random() < 0.3 else ASCII
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(most)))


def test_random_values_give_the_same_bytes():
    rng = random.Random(20260302)
    ids = ["ok@example.org", "a.b-c@x.test", "=?x?=@y", "q\"x@y", "(c)@d"] + [f"m{i}@{'d' * i}.test" for i in range(60)]
    for n in range(500):
        to = tuple(Address(fuzz_text(rng, 12), rng.choice(["ann@example.org", "b.c+d@x-y.test", "ann@bücher.example",
                                                            "x" * 60 + "@example.org", "josé@example.org",
                                                            "日本@bücher.example"]))
                   for _ in range(rng.choice([1, 1, 1, 2, 3])))
        h = headers(message_id=rng.choice(["hd.x@example.com", "hd." + "b" * rng.randrange(40, 80) + "@example.com"]),
                    from_name=fuzz_text(rng, 25), to=to, subject=fuzz_text(rng, rng.choice([10, 40, 120, 400])),
                    in_reply_to=rng.choice([None, *ids]), references=tuple(rng.sample(ids, rng.randrange(0, 25))),
                    reply_to=rng.choice([None, "support@example.com", "support+abcdefghij@example.com"]),
                    loop=fuzz_text(rng, 10), ticket_ref=fuzz_text(rng, 8),
                    lang=rng.choice([None, "de", fuzz_text(rng, 5)]))
        body = Rendered("s", fuzz_text(rng, 300), rng.choice([None, fuzz_text(rng, 200)]), "t", None)
        assert outcome(compose, h, body, n) == outcome(reference, h, body, n), (n, h, body)
