"""Unit tests for the parse stage (daemon.pipeline.parse and its header helpers).

Real mail comes from the shared corpus (../shared/corpus next to the repository);
hostile and edge cases are built here as bytes.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import timezone
from pathlib import Path

import pytest

from daemon.errors import ParseError
from daemon.model import ParsedMessage
from daemon.pipeline import addresses as hdr
from daemon.pipeline import parse as parse_mod
from daemon.pipeline.parse import ParseLimits, html_to_text, parse

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REASONS = {"not_mail", "too_large", "too_many_parts", "too_deep", "too_many_headers",
           "parse_failed"}


def load(path: Path) -> ParsedMessage:
    return parse(path.read_bytes())


def mail(headers: str, body: str = "hello\n", *, eol: str = "\n") -> bytes:
    text = headers.strip("\n") + "\n\n" + body
    return text.replace("\n", eol).encode("utf-8")


BASIC = "From: Alice <alice@Example.ORG>\nTo: help@desk.test\nSubject: Printer\n" \
        "Message-ID: <m1@example.org>\nDate: Tue, 05 Mar 2024 10:00:00 +0100\n"


# -- the whole corpus ---------------------------------------------------------------------

def check_invariants(msg: ParsedMessage) -> None:
    for name, value in msg.headers:
        assert not CONTROL.search(value), (name, value)
        assert not name.lower().startswith("x-helpdesk-")
    for text in (msg.subject, msg.message_id, *msg.in_reply_to, *msg.references):
        assert not CONTROL.search(text)
    assert msg.message_id and not re.search(r"[<>\s]", msg.message_id)
    assert re.fullmatch(r"[0-9a-f]{64}", msg.content_digest)
    assert msg.date is None or msg.date.tzinfo == timezone.utc
    for addr in (msg.from_addr, *msg.to, *msg.cc, *msg.reply_to):
        if addr is not None:
            assert not CONTROL.search(addr.name + addr.email)
            assert addr.email.split("@")[1] == addr.email.split("@")[1].lower()
    for att in msg.attachments:
        assert att.filename and len(att.filename) <= 255
        assert not CONTROL.search(att.filename) and not re.search(r"[/\\]", att.filename)
        assert att.size == len(att.data) and att.sha256 == hashlib.sha256(att.data).hexdigest()
    assert "\x00" not in msg.text
    assert all(len(d) <= 200 for d in msg.defects)


def test_every_corpus_file_parses_or_is_refused_with_a_reason(corpus: Path) -> None:
    files = sorted([*corpus.rglob("*.eml"), *corpus.rglob("*.msg")])
    assert len(files) > 800
    refused: dict[str, str] = {}
    for path in files:
        try:
            msg = load(path)
        except ParseError as exc:
            assert exc.reason in REASONS, (path, exc)
            refused[path.relative_to(corpus).as_posix()] = exc.reason
        else:
            assert isinstance(msg, ParsedMessage)
            check_invariants(msg)
    # The only non-mail in the corpus: an Outlook OLE file and a file with no header block.
    assert refused == {"weird/mail-parser/mail_outlook_1.msg": "not_mail",
                       "weird/rt/lorem-ipsum.eml": "not_mail"}


# -- charsets and header decoding ---------------------------------------------------------

def test_raw_8bit_headers_and_bodies_are_decoded_sensibly(corpus: Path) -> None:
    russian = load(corpus / "weird/rt/russian-subject-no-content-type.eml")
    assert russian.subject == "тест тест"                     # raw KOI8-R, no charset at all
    assert russian.text.strip() == "ТЕСТ"
    latin = load(corpus / "weird/rt/new-ticket-from-iso-8859-1-full.eml")
    assert latin.from_addr is not None and latin.from_addr.name == "Wilhelmsen Håvard"
    sina = load(corpus / "bounces/flufl.bounce/sina_01.eml")   # raw GB2312 Subject
    assert sina.subject == "邮件传输失败！"
    gb = load(corpus / "weird/rt/new-ticket-from-gb18030.eml")
    assert gb.subject == "测试" and gb.text == "测试"


def test_encoded_words_display_names_and_split_characters(corpus: Path) -> None:
    expected = json.loads((corpus / "weird/discourse/encoded_display_name.expected.json").read_text())
    msg = load(corpus / "weird/discourse/encoded_display_name.eml")
    assert msg.from_addr is not None
    assert (msg.from_addr.name, msg.from_addr.email) == (expected["from_display_name"],
                                                        expected["from_address"])
    assert msg.subject == expected["subject"]
    # a UTF-8 character split across two encoded words survives
    mailru = load(corpus / "bounces/flufl.bounce/simple_39.eml")
    assert mailru.subject == "Ваше сообщение не доставлено. Mail failure."


def test_lying_and_unknown_charsets_fall_back_without_raising(corpus: Path) -> None:
    chinese = load(corpus / "replies/discourse/chinese_reply.eml")       # Big5 label, UTF-8 data
    expected = (corpus / "replies/discourse/chinese_reply.expected.txt").read_text().strip()
    assert chinese.text.strip() == expected
    qmail = load(corpus / "autoreplies/flufl.bounce/qmail_08.eml")      # ansi_x3.110-1983
    assert qmail.text.strip()
    assert hdr.decode_text("Grüße".encode("utf-8"), "iso-8859-1") == ("Grüße", "utf-8")
    assert hdr.decode_text("Grüße".encode("cp1252"), "x-unknown")[0] == "Grüße"
    assert hdr.decode_text(b"\xff\xfe\x00", "unicode_escape")[0]        # never a non-charset
    broken = "Привет мир, ".encode() * 20 + b"\xd1"
    assert hdr.decode_text(broken, "utf-8")[1] == "utf-8 (repaired)"


def test_rfc2231_filename_continuations_in_iso_2022_jp(corpus: Path) -> None:
    msg = load(corpus / "attachments/rt/rfc2231-attachment-filename-continuations.eml")
    assert [a.filename for a in msg.attachments] == ["新しいテキスト ドキュメント.txt"]


def test_header_values_never_carry_line_breaks_or_controls() -> None:
    raw = mail("From: a@b.test\nTo: c@d.test\nMessage-ID: <x@y>\n"
               "Subject: Hi =?UTF-8?Q?x=0ABcc:_x@evil.test?=\n"
               "X-Note: =?UTF-8?B?" + "YQ0KYgljAGQ=" + "?=\n")
    msg = parse(raw)
    assert msg.subject == "Hi x Bcc: x@evil.test"
    assert msg.header("x-note") == "a b c d"
    assert hdr.sanitize("a\r\n\tb\u2028c\x85d") == "a b c d"


def test_bom_and_line_endings_do_not_change_the_result(corpus: Path) -> None:
    lf = mail(BASIC, "line one\nline two\n")
    variants = [lf, b"\xef\xbb\xbf" + lf, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")]
    results = [parse(v) for v in variants]
    assert {r.content_digest for r in results} == {results[0].content_digest}
    assert {r.text for r in results} == {"line one\nline two\n"}
    assert {r.subject for r in results} == {"Printer"}
    arf = load(corpus / "bounces/mimekit/feedback-report.eml")        # starts with a BOM
    assert arf.from_addr is not None and arf.machine.kind == "feedback"


def test_sisimai_line_ending_variants_match_their_expectations(corpus: Path) -> None:
    folder = corpus / "weird/sisimai-line-endings"
    for path in sorted(folder.glob("*.eml")):
        expected = json.loads(path.with_suffix("").with_suffix(".expected.json").read_text())
        msg = load(path)
        assert msg.machine.kind == "bounce", path.name
        assert msg.subject and msg.from_addr is not None, path.name
        facts = expected.get("final_recipient_fields_in_message", [])
        if facts and msg.machine.dsn is not None:
            want = {f["final_recipient"].split(";")[-1].strip().lower() for f in facts}
            assert set(msg.machine.dsn.recipients) == want, path.name
            assert msg.machine.dsn.status == facts[0]["status"], path.name
        twin = corpus / "bounces/sisimai" / (path.name.split("_", 1)[1])
        if twin.exists():       # same mail with LF endings: same digest and same reading
            other = load(twin)
            assert (other.content_digest, other.text) == (msg.content_digest, msg.text)


# -- identity: message ids and the content digest -----------------------------------------

def test_message_id_without_brackets_and_synthetic_when_missing(corpus: Path) -> None:
    assert parse(mail(BASIC)).message_id == "m1@example.org"
    msg = load(corpus / "weird/discourse/missing_message_id.eml")
    assert msg.message_id_synthetic
    assert msg.message_id == f"{msg.content_digest[:32]}@synthetic.helpdeskd.invalid"
    empty = parse(mail("From: a@b.test\nMessage-ID:   \nSubject: s\n"))
    assert empty.message_id_synthetic
    bare = parse(mail("From: a@b.test\nMessage-ID: bare-id@host\n"))
    assert (bare.message_id, bare.message_id_synthetic) == ("bare-id@host", False)


def test_in_reply_to_and_references_tolerate_junk() -> None:
    msg = parse(mail(BASIC + "In-Reply-To: Your message of Monday <p1@x.test> (sent)\n"
                     "References: <r1@x.test>\n <r2@x.test> junk <r1@x.test>,<r3 @x.test>\n"))
    assert msg.in_reply_to == ("p1@x.test",)
    assert msg.references == ("r1@x.test", "r2@x.test", "r3@x.test")
    assert parse(mail(BASIC + "In-Reply-To: p9@x.test\n")).in_reply_to == ("p9@x.test",)


def test_digest_ignores_trace_headers_but_not_content(corpus: Path) -> None:
    smtp = mail(BASIC, "Body\n")
    piped = b"From MAILER-DAEMON Tue Mar  5 10:00:01 2024\nReturn-Path: <alice@example.org>\n" \
            b"Delivered-To: help@desk.test\nReceived: from mx by here; Tue, 5 Mar 2024\n" \
            b"X-Original-To: help@desk.test\nAuthentication-Results: mx; dkim=pass\n" \
            b"ARC-Seal: i=1; cv=none\nX-Spam-Status: No\n" + smtp + b"\n"
    assert parse(piped).content_digest == parse(smtp).content_digest
    assert parse(mail(BASIC, "Other body\n")).content_digest != parse(smtp).content_digest
    assert parse(mail(BASIC + "DKIM-Signature: v=1\n")).content_digest != parse(smtp).content_digest
    one = load(corpus / "weird/notmuch/duplicate_msg-1-1.eml")      # same Message-ID,
    two = load(corpus / "weird/notmuch/duplicate_msg-1-2.eml")      # different mail
    assert one.message_id == two.message_id
    assert one.content_digest != two.content_digest


def test_our_own_header_namespace_is_dropped_on_intake() -> None:
    msg = parse(mail(BASIC + "X-Helpdesk-Ticket: 42\nx-HELPDESK-agent: yes\nX-Other: kept\n"))
    assert msg.header("x-helpdesk-ticket") is None and msg.header("X-Helpdesk-Agent") is None
    assert msg.header("x-other") == "kept"


def test_addresses_dates_and_groups() -> None:
    msg = parse(mail("From: =?UTF-8?Q?J=C3=BCrgen?= <Juergen@Example.DE>\n"
                     "To: undisclosed-recipients:;\nCc: Team: a@x.test, \"B, C\" <b@X.Test>;\n"
                     "Reply-To: <bad\x01@x.test>, ok@y.test\nDate: Wed, 20 Sep 1995 00:19:00 -0400\n"
                     "Subject: s\nMessage-ID: <1@x>\n"))
    assert msg.from_addr is not None
    assert (msg.from_addr.name, msg.from_addr.email) == ("Jürgen", "Juergen@example.de")
    assert msg.to == ()
    assert [(a.name, a.email) for a in msg.cc] == [("", "a@x.test"), ("B, C", "b@x.test")]
    assert [a.email for a in msg.reply_to] == ["ok@y.test"]
    assert msg.date is not None and msg.date.isoformat() == "1995-09-20T04:19:00+00:00"
    assert parse(mail(BASIC.replace("Tue, 05 Mar 2024 10:00:00 +0100", "yesterday"))).date is None
    # an encoded comma or bracket in a display name cannot forge a second address
    forged = hdr.parse_addresses("=?utf-8?q?evil=40x.test=3E=2C_?= <real@y.test>")
    assert [a.email for a in forged] == ["real@y.test"]


# -- bodies and attachments ---------------------------------------------------------------

def test_html_only_mail_gets_a_readable_text_rendering() -> None:
    html = ("<html><head><style>p{color:red}</style><title>T</title></head><body>"
            "<script>alert(1)</script><p>Hello&nbsp;<b>world</b></p><div>Second</div>"
            "<a href='https://x.test/reset'>reset link</a><br>end</body></html>")
    msg = parse(mail(BASIC + "Content-Type: text/html; charset=utf-8\n", html))
    assert msg.html is not None and msg.html.strip() == html
    assert msg.text == "Hello world\n\nSecond\nreset link <https://x.test/reset>\nend"
    assert html_to_text("<ul><li>one</li><li>two</li></ul>") == "- one\n- two"
    assert "alert" not in html_to_text("<script>alert(1)</script>x") and html_to_text("") == ""


def test_corpus_attachment_expectations(corpus: Path) -> None:
    for path in sorted((corpus / "attachments/discourse").glob("*.eml")):
        expected = json.loads(path.with_suffix(".expected.json").read_text())
        msg = load(path)
        if "body" in expected:
            assert msg.text.strip() == expected["body"], path.name
        got = [(a.filename, a.size, a.content_type) for a in msg.attachments]
        for want, (name, size, ctype) in zip(expected["attachments"], got, strict=True):
            assert name == want["filename"], path.name
            assert "size" not in want or size == want["size"], path.name
            assert ctype == want.get("content_type", ctype).split()[0], path.name
    for name in ("ukr", "rich-text"):
        msg = load(corpus / f"attachments/mimekit-tnef/{name}.eml")
        assert [a.filename for a in msg.attachments] == ["winmail.dat"]
        assert msg.attachments[0].content_type == "application/ms-tnef"
    calendar = load(corpus / "attachments/notmuch/attachment_text-calendar.eml")
    assert [a.content_type for a in calendar.attachments] == ["text/calendar"]
    nested = load(corpus / "attachments/rt/email-file-attachment.eml")
    assert [(a.filename, a.content_type) for a in nested.attachments] == [
        ("test-email.eml", "message/rfc822")]
    assert nested.attachments[0].data.startswith(b"Return-Path:") or b"\nSubject:" in nested.attachments[0].data


@pytest.mark.parametrize(("raw", "shown"), [
    ("../../etc/cron.d/x", "x"), ("/etc/passwd", "passwd"), ("C:\\x\\evil.exe", "evil.exe"),
    ("a\x00.pdf", "a.pdf"), ("CON", "_CON"), ("con.txt", "_con.txt"), ("LPT1.doc", "_LPT1.doc"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"), ("", "attachment-3.pdf"), ("..", "attachment-3.pdf"),
    ("=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?=", "Résumé.pdf"),
])
def test_display_filenames_are_sanitised(raw: str, shown: str) -> None:
    assert hdr.display_filename(raw, 3, "application/pdf") == shown


def test_long_filenames_keep_their_extension_and_parts_keep_bytes() -> None:
    long_name = "a" * 10_000 + ".pdf"
    assert hdr.display_filename(long_name, 1, "application/pdf") == "a" * 251 + ".pdf"
    raw = mail(BASIC + 'Content-Type: multipart/mixed; boundary="b"\n',
               '--b\nContent-Type: text/plain\n\nSee attached.\n'
               '--b\nContent-Type: application/octet-stream\n'
               'Content-Disposition: attachment; filename="../../x\\\\CON.bin"\n'
               'Content-Transfer-Encoding: base64\n\nAAEC/w==\n'
               '--b\nContent-Type: image/png\nContent-ID: <img1>\n'
               'Content-Transfer-Encoding: base64\n\niVBORw==\n--b--\n')
    msg = parse(raw)
    assert msg.text == "See attached."
    first, second = msg.attachments
    assert (first.filename, first.data, first.inline) == ("_CON.bin", b"\x00\x01\x02\xff", False)
    assert (second.filename, second.inline, second.size) == ("attachment-2.png", True, 4)


def test_body_without_a_blank_separator_line() -> None:
    html = parse(b"From: a@b.test\nContent-Type: text/html\n<p>Hi</p>\n")
    assert html.html is not None and html.text == "Hi"
    plain = parse(b"From: a@b.test\nSubject: s\nHello there\nsecond: line\n")
    assert plain.text == "Hello there\nsecond: line\n"


def test_broken_fold_in_header_block_keeps_the_mime_structure(corpus: Path) -> None:
    msg = load(corpus / "weird/mimekit/issue358.eml")
    assert msg.text.strip() == "Test headers" and msg.html is not None


# -- limits and failures ------------------------------------------------------------------

def nested_multipart(depth: int) -> bytes:
    opening = b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1)
                       for i in range(depth))
    closing = b"".join(b"--b%d--\n" % i for i in reversed(range(depth + 1)))
    return mail(BASIC + "Content-Type: multipart/mixed; boundary=b0\n", "") + opening + \
        b"--b%d\n\nhi\n" % depth + closing


@pytest.mark.parametrize(("raw", "limits", "reason"), [
    (mail(BASIC, "x" * 5000), ParseLimits(max_bytes=1000), "too_large"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, ParseLimits(), "not_mail"),
    (b"Lorem ipsum dolor sit amet\nconsectetur: adipiscing\n\nelit\n", ParseLimits(), "not_mail"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", ParseLimits(), "not_mail"),
    (mail(BASIC + "".join(f"X-H{i}: v\n" for i in range(100_000))), ParseLimits(),
     "too_many_headers"),
    (mail(BASIC + "To: " + ", ".join(f"u{i}@example.com" for i in range(100_000)) + "\n"),
     ParseLimits(), "too_many_headers"),
    (mail(BASIC + 'Content-Type: multipart/mixed; boundary="z"\n',
          "".join(f"--z\nContent-Type: text/plain\n\npart {i}\n" for i in range(10_000)) + "--z--\n"),
     ParseLimits(), "too_many_parts"),
    (mail(BASIC + 'Content-Type: multipart/mixed; boundary="z"\n',
          "".join(f"--z\n\npart {i}\n" for i in range(600)) + "--z--\n"),
     ParseLimits(), "too_many_parts"),
    (nested_multipart(1000), ParseLimits(), "too_deep"),
    (nested_multipart(1000).replace(b"--\n", b"\n"), ParseLimits(), "too_deep"),
    (mail(BASIC + "".join("Content-Type: message/rfc822\n\nFrom: x@y.test\n" for _ in range(1000))),
     ParseLimits(), "too_deep"),
    (nested_multipart(12), ParseLimits(max_depth=10), "too_deep"),
])
def test_limits_refuse_hostile_mail(raw: bytes, limits: ParseLimits, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(raw, limits=limits)
    assert caught.value.reason == reason


def test_within_limits_still_parses() -> None:
    assert parse(nested_multipart(25)).text == "hi"   # the last newline belongs to the delimiter
    stuffed = parse(mail(BASIC.replace("To: help@desk.test", "To: " + ";" * 200_000)))
    assert stuffed.to == ()
    words = parse(mail(BASIC.replace("Subject: Printer", "Subject: " + " ".join(["=?utf-8?q?a?="] * 50_000))))
    assert words.subject == "a" * 50_000


def test_library_failures_become_parse_errors_or_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'index'")

    # parse builds the tree itself (a linear header policy) and hands it to MailParser,
    # whose constructor runs MailParser.parse: that is where a library bug strikes
    monkeypatch.setattr(parse_mod.mailparser.MailParser, "parse", explode)
    fallback = parse(mail(BASIC))       # a mail-parser bug: the stdlib tree is used instead
    assert fallback.text == "hello\n" and "mail-parser failed: AttributeError" in fallback.defects

    def recurse(_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse_mod.mailparser.MailParser, "parse", recurse)
    with pytest.raises(ParseError) as deep:
        parse(mail(BASIC))
    assert deep.value.reason == "too_deep"

    def bad_codec(*_: object, **__: object) -> None:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad\nline")

    monkeypatch.undo()                  # mail-parser back; now fail further down the stage
    monkeypatch.setattr(parse_mod, "judge", bad_codec)
    with pytest.raises(ParseError) as failed:
        parse(mail(BASIC))
    assert failed.value.reason == "parse_failed" and "\n" not in failed.value.detail


def test_sendgrid_dsn_that_trips_mail_parser_is_still_read(corpus: Path) -> None:
    msg = load(corpus / "bounces/sisimai/lhost-sendgrid-01.eml")
    assert msg.machine.kind == "bounce"
    assert msg.machine.dsn is not None and msg.machine.dsn.recipients == ("kijitora@example.jp",)
