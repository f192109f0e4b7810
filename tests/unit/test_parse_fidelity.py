"""Reading mail as its sender meant it (issue 15; issue 12 defects 2, 6 and 7; reliability
cases 93 and 94): charset aliases and repairs, raw 8-bit inside encoded words, CJK vendor
variants, HTML for an empty text part, undeclared or oddly declared quoted-printable,
boundaries that leak, tolerant addresses, attachments as a mail client shows them, and
the attack mails that used to stall the parser. Every mail here is written for the test.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import io
import zipfile

import pytest

from daemon.errors import ParseError
from daemon.model import Address
from daemon.pipeline import addresses as hdr
from daemon.pipeline.charsets import codec_for, decode_text
from daemon.pipeline.parse import ParseLimits, parse

HEAD = "From: Ann <ann@example.org>\nTo: help@desk.test\nMessage-ID: <f1@example.org>\n"


def mail(headers: str, body: str = "hello\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8", "surrogateescape")


def raw_mail(headers: bytes, body: bytes = b"hello\n") -> bytes:
    return headers.strip(b"\n") + b"\n\n" + body


# -- subjects: raw 8-bit inside encoded words, CJK variants -------------------------------

@pytest.mark.parametrize(("subject", "want"), [
    (b"=?iso-8859-1?q?caf\xe9 cr\xe8me?=", "café crème"),              # raw Latin-1 in a Q word
    (b"=?utf-8?q?Caf\xc3\xa9_ouvert?=", "Café ouvert"),                  # raw UTF-8 in a Q word
    (b"=?windows-1252?B?Gr\xfc\xdfe?=", "Grüße"),                       # raw text in a B word
    (b"=?shift_jis?B?\x93\xfa\x96\x7b?=", "日本"),                       # raw Shift_JIS bytes
    (b"Re: =?iso-8859-1?q?na\xefve?= question", "Re: naïve question"),
])
def test_raw_8bit_text_inside_encoded_words_is_decoded(subject: bytes, want: str) -> None:
    msg = parse(raw_mail(HEAD.encode() + b"Subject: " + subject))
    assert msg.subject == want


def test_iso_2022_jp_with_microsoft_extensions_in_subject_and_body() -> None:
    jis = b"\x1b$B-!F|K\\\x1b(B"                       # "①日本": ① is NEC row 13 (CP50220)
    word = b"=?ISO-2022-JP?B?" + base64.b64encode(jis) + b"?="
    msg = parse(raw_mail(HEAD.encode() + b"Subject: " + word + b"\nContent-Type: text/plain; "
                         b"charset=ISO-2022-JP\n", jis + b"\n"))
    assert msg.subject == "①日本" and msg.text.strip() == "①日本"
    raw_header = parse(raw_mail(HEAD.encode() + b"Subject: " + jis))     # 7-bit JIS, not encoded
    assert raw_header.subject == "①日本"
    kana = parse(raw_mail(HEAD.encode() + b"Subject: =?iso-2022-jp?B?"
                          + base64.b64encode(b"\x1b(I12\x1b(B") + b"?="))  # CP50221 half-width kana
    assert kana.subject == "ｱｲ"


@pytest.mark.parametrize(("label", "text", "codec"), [
    ("gb2312", "啰嗦的打印机", "gbk"),            # GBK-only characters in "GB2312" mail
    ("GBK", "打印机", "gbk"), ("x-gbk", "打印机", "gbk"), ("cp936", "打印机", "gbk"),
    ("shift_jis", "ﾃｽﾄ①", "cp932"), ("x-sjis", "テスト", "cp932"), ("windows-31j", "①", "cp932"),
    ("big5", "印表機", "cp950"), ("euc-kr", "프린터", "cp949"), ("ks_c_5601-1987", "프린터", "cp949"),
    ("iso-8859-1", "€ café", "cp1252"), ("euc-jp", "test ①", "euc_jis_2004"),
    ('"utf-8";', "café", "utf-8"), ("UTF8", "café", "utf-8"), ("tis-620", "ทดสอบ", "cp874"),
])
def test_vendor_variants_and_odd_labels_decode_as_the_sender_wrote(label: str, text: str, codec: str) -> None:
    assert decode_text(text.encode(codec), label)[0] == text
    msg = parse(mail(HEAD + "Subject: x\nContent-Type: text/plain; charset=" + label + "\n",
                     "").replace(b"\n\n", b"\n\n" + text.encode(codec) + b"\n", 1))
    assert msg.text.strip() == text


def test_labels_that_are_no_charset_are_refused() -> None:
    assert codec_for("base64") is None and codec_for("unicode_escape") is None
    assert codec_for("x-unknown") is None and codec_for("") is None


# -- bodies: HTML fallback, quoted-printable, leaking boundaries --------------------------

ALT = HEAD + 'Subject: s\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="alt-1"\n'


def test_an_empty_text_part_next_to_html_gives_the_html_text() -> None:
    body = ("--alt-1\nContent-Type: text/plain; charset=utf-8\n\n\n"
            "--alt-1\nContent-Type: text/html; charset=utf-8\n\n<p>The VPN is <b>down</b>.</p>\n"
            "--alt-1--\n")
    assert parse(mail(ALT, body)).text == "The VPN is down."
    only_html = HEAD + 'Subject: s\nContent-Type: multipart/mixed; boundary="mix-1"\n'
    body = "--mix-1\nContent-Type: text/html\n\n<div>Printer <i>jammed</i></div>\n--mix-1--\n"
    assert parse(mail(only_html, body)).text == "Printer jammed"


@pytest.mark.parametrize("cte", ['"Quoted-Printable"', "quoted-printable;", "Quoted-Printable (qp)",
                                 "quoted_printable"])
def test_quoted_printable_with_junk_around_the_encoding_is_decoded(cte: str) -> None:
    msg = parse(mail(HEAD + f"Subject: s\nContent-Type: text/plain; charset=utf-8\n"
                     f"Content-Transfer-Encoding: {cte}\n", "I =E2=99=A5 the new laptop=\n, thanks\n"))
    assert msg.text == "I ♥ the new laptop, thanks\n"


def test_undeclared_quoted_printable_is_decoded_and_plain_text_is_not() -> None:
    qp = ("Hello,=20the printer on floor 3 says =E2=80=9Cpaper jam=E2=80=9D again an=\n"
          "d the tray is empty. We tried twice =E2=80=93 nothing changed, please have=\n"
          " a look at it today.\n")
    msg = parse(mail(HEAD + "Subject: s\nContent-Type: text/plain; charset=utf-8\n", qp))
    assert msg.text == ("Hello, the printer on floor 3 says “paper jam” again and the tray is empty. "
                        "We tried twice – nothing changed, please have a look at it today.\n")
    assert any("read as quoted-printable" in d for d in msg.defects)
    plain = "Set x=1 and y=2.\nThe key is A=FF=00=12 in hex, see the =?utf-8?q?=C3=A9?= word.\n"
    assert parse(mail(HEAD + "Subject: s\n", plain)).text == plain


def test_a_multipart_whose_boundary_is_not_found_is_re_read() -> None:
    lost_quotes = HEAD + "Subject: s\nContent-Type: multipart/alternative; boundary='alt-2'\n"
    body = ("--alt-2\nContent-Type: text/plain\n\nPlain words.\n--alt-2\nContent-Type: text/html\n\n"
            "<p>Html words.</p>\n--alt-2--\n")
    msg = parse(mail(lost_quotes, body))
    assert msg.text == "Plain words." and msg.html is not None and "--alt-2" not in msg.text
    lost_type = HEAD + "Subject: s\n"                  # the Content-Type line was lost entirely
    body = ("This is a multi-part message in MIME format.\n\n--zz-99\nContent-Type: text/plain\n\n"
            "The body.\n--zz-99\nContent-Type: application/pdf; name=a.pdf\n"
            "Content-Transfer-Encoding: base64\n\nJVBERi0=\n--zz-99--\n")
    msg = parse(mail(lost_type, body))
    assert msg.text == "The body." and [a.filename for a in msg.attachments] == ["a.pdf"]


def test_a_bounce_quoting_mime_source_stays_text() -> None:
    body = ("Sorry, we were unable to deliver your message to the following address.\n\n"
            "<x@example.jp>:\n550 5.1.1 User Unknown\n\n--- Below this line is a copy of the message.\n\n"
            "Subject: hi\nContent-Type: multipart/alternative; boundary=\"q-1\"\n\n--q-1\n"
            "Content-Type: text/plain\n\nNyaan\n--q-1--\n")
    msg = parse(mail(HEAD + "Subject: Failure Notice\n", body))
    assert msg.text.startswith("Sorry, we were unable") and "Nyaan" in msg.text


# -- addresses ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "want"), [
    (b"Smith (IT <a2@example.org>", ("Smith (IT", "a2@example.org")),           # issue 12, defect 6
    (b"\xe9(IT <a2@example.org>", ("é(IT", "a2@example.org")),                  # invalid UTF-8, then (
    (b"jo(comment)e@example.org (Joe (the) \\) man)", ("Joe (the) ) man", "joe@example.org")),
    (b"<joe(x)@example(y).org>", ("", "joe@example.org")),
    (b"joe@example.org (Joe Bloggs)", ("Joe Bloggs", "joe@example.org")),
    (b"Joe Bloggs joe@example.org", ("Joe Bloggs", "joe@example.org")),          # no angle brackets
    (b'"Bloggs, Joe" joe@example.org', ("Bloggs, Joe", "joe@example.org")),
    (b'"unterminated <joe@example.org>', ("unterminated", "joe@example.org")),
    (b"=?utf-8?q?Bob=0D=0AX-Injected:_x4@evil.test=0D=0A?= <bob@example.org>",   # defect 7
     ("Bob X-Injected: x4@evil.test", "bob@example.org")),
])
def test_tolerant_address_parsing_finds_the_sender(value: bytes, want: tuple[str, str]) -> None:
    msg = parse(raw_mail(b"From: " + value + b"\nTo: help@desk.test\nSubject: s"))
    assert msg.from_addr == Address(*want)


def test_address_lists_keep_their_items_apart() -> None:
    got = hdr.parse_addresses('a@x.org, "Smith, J" <j@x.org>, (only a comment), Team: b@x.org, c@x.org;')
    assert [a.email for a in got] == ["a@x.org", "j@x.org", "b@x.org", "c@x.org"]
    assert hdr.parse_addresses("(((((" * 20_000) == ()                          # linear, no address
    assert hdr.parse_addresses("=?utf-8?q?a=2C_b_<evil@x.org>?= <real@x.org>") == (
        Address("a, b <evil@x.org>", "real@x.org"),)                               # no forged second


# -- attachments as a mail client shows them -------------------------------------------------

MIXED = HEAD + 'Subject: s\nContent-Type: multipart/mixed; boundary="mix-2"\n'


def test_nameless_inline_and_dispositionless_parts_are_attachments_like_in_a_client() -> None:
    body = ("--mix-2\nContent-Type: text/plain\n\nSee the files.\n"
            "--mix-2\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n"
            "--mix-2\nContent-Type: image/png; name=shot.png\nContent-ID: <c1>\n"
            "Content-Transfer-Encoding: base64\n\niVBORw==\n"
            "--mix-2\nContent-Type: text/plain; name=log.txt\nContent-Disposition: inline\n\nline 1\n"
            "--mix-2\nContent-Type: text/plain\n\n-- \nfooter of a list\n--mix-2--\n")
    msg = parse(mail(MIXED, body))
    assert [(a.filename, a.content_type, a.inline) for a in msg.attachments] == [
        ("attachment-1.pdf", "application/pdf", False), ("shot.png", "image/png", True),
        ("log.txt", "text/plain", True)]
    assert msg.text.startswith("See the files.") and "footer of a list" in msg.text


def test_uuencoded_files_in_the_text_become_attachments() -> None:
    data = bytes(range(256)) * 3
    lines = [binascii.b2a_uu(data[i:i + 45]).decode().rstrip("\n") for i in range(0, len(data), 45)]
    body = "Here is the log.\n\nbegin 644 dump.bin\n" + "\n".join(lines) + "\n`\nend\n\nBye\n"
    msg = parse(mail(HEAD + "Subject: s\n", body))
    assert [(a.filename, a.data) for a in msg.attachments] == [("dump.bin", data)]
    assert msg.text == "Here is the log.\n\n\n\nBye\n"


def test_compressed_attachments_are_never_decompressed() -> None:
    """reliability.md 93: a zip bomb (and a gzip body) is stored as the bytes sent."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * 20_000_000)
    bomb, gz = buf.getvalue(), gzip.compress(b"\0" * 5_000_000)
    body = ("--mix-2\nContent-Type: text/plain\n\nsee zip\n--mix-2\nContent-Type: application/zip; "
            "name=bomb.zip\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(bomb).decode()
            + "--mix-2\nContent-Type: application/octet-stream; name=z.gz\nContent-Encoding: gzip\n"
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(gz).decode() + "--mix-2--\n")
    msg = parse(mail(MIXED, body))
    assert [(a.filename, a.data, a.size) for a in msg.attachments] == [
        ("bomb.zip", bomb, len(bomb)), ("z.gz", gz, len(gz))]
    assert len(bomb) < 100_000 and msg.text == "see zip"


def test_a_huge_text_part_is_cut_and_kept_whole_as_an_attachment() -> None:
    """reliability.md 94: the decoded text is capped; the part is stored as an attachment."""
    text = ("ticket text " * 20_000).encode()
    limits = ParseLimits(max_text_chars=10_000)
    msg = parse(mail(HEAD + "Subject: s\nContent-Type: text/plain; charset=utf-8\n"
                     "Content-Transfer-Encoding: base64\n", base64.encodebytes(text).decode()), limits=limits)
    assert len(msg.text) == 10_000 and any("body cut" in d for d in msg.defects)
    assert [(a.data, a.content_type) for a in msg.attachments] == [(text, "text/plain")]
    utf32 = parse(mail(HEAD + "Subject: s\nContent-Type: text/plain; charset=utf-32\n"
                       "Content-Transfer-Encoding: base64\n",
                       base64.encodebytes(("x" * 20_000).encode("utf-32")).decode()), limits=limits)
    assert len(utf32.text) == 10_000 and utf32.attachments[0].size == 80_004


# -- the attack mails of issue 12 (defect 2): caps before the stdlib sees the headers -------

def test_a_content_type_parameter_flood_is_cut_with_a_defect() -> None:
    flood = "Content-Type: text/plain; charset=utf-8" + "".join(f";\n p{i}=v" for i in range(5_000))
    msg = parse(mail(HEAD + "Subject: s\n" + flood + "\n", "body\n"))
    assert msg.text == "body\n" and "content-type: parameters after 100 dropped" in msg.defects


def test_a_parameter_flood_inside_a_text_part_that_is_re_read_as_mime_is_cut_too() -> None:
    """Fuzzing (bench/fuzz.py, seed 2026, mutant 57522) found a text/plain part whose body
    was MIME parts: re-read as a multipart, its parts' headers had not been capped, and a
    Content-Type flood there took 9 s in the stdlib's parameter parser."""
    flood = "Content-Type: text/plain; charset=utf-8" + "".join(f"; p{i}=v" for i in range(5_000))
    body = f"--inner\n{flood}\n\nhello\n--inner--\n"
    msg = parse(mail(HEAD + "Subject: s\nContent-Type: text/plain\n", body))
    assert "hello" in msg.text and "content-type: parameters after 100 dropped" in msg.defects
    assert any("re-read as multipart/mixed" in d for d in msg.defects)


def test_an_attached_message_with_a_huge_8bit_subject_keeps_its_attachment() -> None:
    inner = b"From: b@example.org\nSubject: " + b"\xe9" * 100_000 + b"\n\nhi\n"
    raw = (MIXED.encode() + b"\n--mix-2\nContent-Type: text/plain\n\nsee attached\n--mix-2\n"
           b"Content-Type: message/rfc822\nContent-Disposition: attachment; filename=inner.eml\n\n"
           + inner + b"--mix-2--\n")
    msg = parse(raw)
    [att] = msg.attachments
    assert msg.text == "see attached" and att.filename == "inner.eml"
    assert att.data.startswith(b"From: b@example.org\nSubject: \xe9\xe9") and att.data.endswith(b"\n\nhi")
    assert any("field cut" in d for d in msg.defects)


def test_a_truncated_deep_nest_is_refused_by_the_estimate_before_any_parse() -> None:
    """400 nested multiparts cut before their closing delimiters: each boundary counts as
    open to the end, so the cheap estimate refuses it (the stdlib needed seconds)."""
    opening = "".join(f'--n{i}\nContent-Type: multipart/mixed; boundary="n{i + 1}"\n\n' for i in range(400))
    raw = mail(HEAD + 'Subject: s\nContent-Type: multipart/mixed; boundary="n0"\n', opening + "--n400\n\nhi\n")
    with pytest.raises(ParseError) as deep:
        parse(raw)
    assert deep.value.reason == "too_deep" and deep.value.detail.startswith("about")
    one_unclosed = mail(MIXED, "--mix-2\nContent-Type: text/plain\n\nstill read\n")
    assert parse(one_unclosed).text.strip() == "still read"
