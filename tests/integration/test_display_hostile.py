"""What `helpdesk show` prints for hostile mail (reliability cases 84, 85, 86): HTML is
shown only as sanitised text (no script, no handler, no remote reference), an attachment
only by name/type/size (a text/html part or one whose type lies never becomes the body),
and names, subjects and text cannot drive the agent's terminal."""
from __future__ import annotations

import json

from daemon import views
from daemon.model import Envelope

ENV = Envelope("ann@example.org", ("support@example.com",), "smtp")
HTML = (b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: invoice\r\nMessage-ID: <h@example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>body{background:url(http://evil.test/track.png)}</style></head><body>"
        b"<p>Please pay.</p><script>alert(document.cookie)</script>"
        b"<img src=x onerror=\"alert(1)\"><a href=\"javascript:alert(2)\">click</a>"
        b"<svg><image href=\"http://evil.test/pixel\"/></svg></body></html>\r\n")
ATTACHED = (b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: see files\r\n"
            b"Message-ID: <att@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nfiles attached\r\n"
            b"--b\r\nContent-Type: text/html\r\nContent-Disposition: attachment; "
            b"filename=\"<img src=x onerror=alert(1)>.html\"\r\n\r\n<script>alert('inline')</script>\r\n"
            b"--b\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=\"\x1b[2Jreport\xe2\x80\xaefdp.exe\"\r\n\r\n"
            b"<html><script>alert('lying type')</script></html>\r\n--b--\r\n")
ESCAPES = (b"From: \"\x1b]0;owned\x07Ann\" <ann@example.org>\r\nTo: support@example.com\r\nSubject: hi\r\n"
           b"Message-ID: <esc@example.org>\r\n\r\nline one\r\n\x1b[31mred\x1b[0m \x1b]8;;http://evil.test\x1b\\link\r\n")


def shown(app, raw: bytes) -> tuple[str, dict]:
    result = app.worker.process(raw, ENV)
    detail = app.store.ticket_detail(result.ticket_id)
    return views.detail_text(detail, "HD"), views.detail_json(detail, "HD")


def test_html_body_is_shown_as_sanitised_text_only(app):
    text, data = shown(app, HTML)
    assert "Please pay." in text and "click" in text
    body = data["messages"][0]["text"]
    for bad in ("<script", "alert(", "onerror", "javascript:", "evil.test", "url(", "<img", "<svg"):
        assert bad not in body and bad not in text


def test_html_attachment_and_lying_type_are_never_the_body_and_names_are_inert(app):
    text, data = shown(app, ATTACHED)
    [msg] = data["messages"]
    assert msg["text"].strip() == "files attached"
    assert "alert('inline')" not in text and "alert('lying type')" not in text and "<script" not in text
    # on a terminal a name is plain text (HTML escaping would garble it); it is shown whole
    assert "<img src=x onerror=alert(1)>.html (text/html" in text
    kinds = sorted(a["content_type"] for a in msg["attachments"])
    assert kinds == ["image/png", "text/html"]                       # listed, by name/type/size only
    for a in msg["attachments"]:
        assert "/" not in a["filename"] and "\x1b" not in a["filename"] and "\u202e" not in a["filename"]
    assert "\x1b" not in text and "\u202e" not in text


def test_terminal_escapes_in_names_and_text_are_made_visible(app):
    text, data = shown(app, ESCAPES)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[31mred" in text                                     # visible, not acted on
    dumped = json.dumps(data, ensure_ascii=False)
    assert "\x1b" not in dumped                                       # JSON escapes control characters


def test_shown_makes_control_and_bidi_characters_visible():
    assert views.shown("a\x1b[2Jb\u202etxt\tc\nd") == "a\\x1b[2Jb\\u202etxt\tc\\nd"
    assert views.shown("one\ntwo", newlines=True) == "one\ntwo"
