"""Tests for daemon.pipeline.strip: unit cases and every reply fixture of the shared corpus.

Each fixture with an expected output in ../shared/corpus/replies is its own test case,
judged by the convention of its folder (see SOURCES.md, section replies/):

* email_reply_parser/, email_reply_trimmer/, discourse/: strip_reply() equals the
  expected text after .strip().  discourse .eml: the first text/plain part, extracted here
  with the stdlib; html_reply and gmail_html_reply have only text/html and are read the
  way the desk reads them (parse(), whose text is the HTML's, then strip_reply()); they
  expect Discourse's Markdown rendering of the HTML ("**bold**"), compared here without
  the emphasis marks, as we give text, not Markdown.
* talon/: talon's extract_from_plain removes quotations only and keeps the signature, so
  the comparison is with Reply.text (the reply as written); reply-quotations-share-block
  feeds the whole raw message, as upstream does.
* talon-html/: strip_reply_html() with all whitespace removed; for *.expected.html the
  text content of the expected HTML is compared (we return text, not HTML).
* mail-parser-reply/: the upstream checks against split_thread(): replies[0] is the
  newest; body = Reply.body, signatures = closing + signature, headers = Reply.header,
  content = header + text.

A fixture that fails on purpose is listed in XFAIL with the reason (strict: a fix makes
the run fail until the entry is removed), and test_corpus_pass_rate guards the total.
"""
from __future__ import annotations

import email
import email.policy
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.pipeline import strip as strip_module
from daemon.pipeline.parse import parse
from daemon.pipeline.strip import split_reply, split_thread, strip_reply, strip_reply_html

from tests.conftest import CORPUS, missing  # noqa: E402  (shared corpus path, skip-or-fail rule)
REPLIES = CORPUS / "replies"
MIN_PASS_RATE = 0.978  # measured: 135 of 138 fixtures (97.8 %); the 3 below are upstream's

HTML_ONLY = {"discourse/html_reply", "discourse/gmail_html_reply"}
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")

XFAIL = {
    "mail-parser-reply/email_swedish_1": (
        "upstream misses the Swedish closing 'Med Vänlig Hälsning,' and so expects it in the "
        "older reply's body; its own danish_1 ('> Mvh\\n> Peter') and pl_1_2 ('> Pozdrawiam,') "
        "expect the same closing of an older reply in its signatures, as we give it"),
    "mail-parser-reply/email_swedish_2": (
        "upstream misses 'Den fre 28 feb. 2025 10:15Anna Andersson <...> skrev:' (no space "
        "after the time) and counts 1 reply; we find the quoted one too (2), and strip it"),
    "talon-html/reply-separated-by-hr": (
        "talon's HTML cutter also drops 'Bob', which shares a <div> with the <hr>; the reply "
        "is written to bob@example.com ('Hi there Bob'), so we keep it as part of the reply"),
}


@dataclass(frozen=True)
class Case:
    """One corpus fixture with an expected output."""

    id: str
    message: Path
    expected: Path

    @property
    def folder(self) -> str:
        return self.id.split("/")[0]


def _corpus_cases() -> list[Case]:
    cases = []
    for expected in sorted(REPLIES.glob("*/*.expected.*")):
        folder, name = expected.parent.name, expected.name.split(".expected.")[0]
        for suffix in (".eml", ".body.txt", ".body.html"):
            message = expected.parent / (name + suffix)
            if message.exists():
                cases.append(Case(f"{folder}/{name}", message, expected))
                break
    return cases


def _require_corpus() -> None:
    if not REPLIES.is_dir():
        missing(f"reply corpus not found at {REPLIES}")


def _decode(data: bytes, charset: str | None = None) -> str:
    # chinese_reply declares Big5 but holds UTF-8 (see SOURCES.md): valid UTF-8 wins.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode(charset or "latin-1")
        except (LookupError, UnicodeDecodeError):
            return data.decode("latin-1")


def _first_text_plain(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return _decode(part.get_payload(decode=True) or b"", part.get_content_charset())
    raise AssertionError(f"{path.name} has no text/plain part")


def _html_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


def _no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _mpr_field(reply, field: str) -> str:
    """The field as mail-parser-reply builds it: it strips every line of its input first
    (EmailMessage._normalize_text), so its expectations hold stripped lines."""
    parts = {"body": [reply.body], "signatures": [reply.closing, reply.signature],
             "headers": [reply.header], "content": [reply.header, reply.text]}[field]
    text = "\n".join(part for part in parts if part)
    return "\n".join(line.strip() for line in text.split("\n"))


def _mpr_check(replies, check: dict) -> str | None:
    """None when the upstream check holds, else what went wrong."""
    if check.get("check") == "replies_count":
        return None if len(replies) == check["value"] else f"{len(replies)} replies"
    index, op, want = check["reply_index"], check["op"], check["value"]
    if index >= len(replies):
        return f"no replies[{index}]"
    got = _mpr_field(replies[index], check["field"])
    ok = {"equals": got.strip() == want.strip(), "contains": want in got,
          "not_contains": want not in got, "startswith": got.startswith(want)}[op]
    return None if ok else f"replies[{index}].{check['field']} {op} {want!r}: {got!r}"


def check_case(case: Case) -> tuple[bool, str]:
    """(passed, detail) for one fixture, judged by its folder's convention."""
    expected = _decode(case.expected.read_bytes())
    if case.folder == "mail-parser-reply":
        replies = split_thread(_decode(case.message.read_bytes()))
        problems = [p for c in json.loads(expected)["checks"] if (p := _mpr_check(replies, c))]
        return not problems, "; ".join(problems)
    if case.folder == "talon-html":
        got = strip_reply_html(_decode(case.message.read_bytes()))
        want = _html_text(expected) if case.expected.suffix == ".html" else expected
        return _no_space(got) == _no_space(want), f"got {got!r}"
    if case.folder == "talon" and case.expected.suffix == ".json":
        spec = json.loads(expected)
        got = split_reply(_decode(case.message.read_bytes())).text  # the whole raw message
        bad = [word for word in spec["reply_must_not_contain"] if word in got]
        return bool(got.strip()) and not bad, f"got {got!r}"
    if case.id in HTML_ONLY:
        got = strip_reply(parse(case.message.read_bytes()).text)
        want = _EMPHASIS.sub(r"\2", expected.strip())
        return got.strip() == want, f"got {got!r}\nwant {want!r}"
    if case.message.suffix == ".eml":
        text = _first_text_plain(case.message)
        got = split_reply(text).text if case.folder == "talon" else strip_reply(text)
    else:
        got = strip_reply(_decode(case.message.read_bytes()))
    return got.strip() == expected.strip(), f"got {got!r}\nwant {expected.strip()!r}"


def _params():
    if not REPLIES.is_dir():
        return [pytest.param(None, id="corpus-missing")]
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(
        strict=True, reason=XFAIL[case.id])] if case.id in XFAIL else [])
        for case in _corpus_cases()]


@pytest.mark.parametrize("case", _params())
def test_corpus_fixture(case: Case | None) -> None:
    _require_corpus()
    passed, detail = check_case(case)
    assert passed, f"{case.id}: {detail}"


def test_corpus_pass_rate() -> None:
    _require_corpus()
    cases = _corpus_cases()
    results = {case.id: check_case(case)[0] for case in cases}
    rate = sum(results.values()) / len(results)
    assert len(results) >= 138, f"only {len(results)} fixtures with expected output found"
    assert rate >= MIN_PASS_RATE, f"pass rate {rate:.1%} < {MIN_PASS_RATE:.0%}"
    assert set(XFAIL) <= set(results), f"stale XFAIL ids: {set(XFAIL) - set(results)}"
    assert {i for i, ok in results.items() if not ok} == set(XFAIL)


# --- behaviour ---------------------------------------------------------------------------

OLD = "\n\n> Old question?\n> Second line.\n"
HEADERS = {
    "en": "On Mon, Jan 6, 2025 at 9:14 AM Bob Smith <bob@example.com> wrote:",
    "en-wrapped": "On Mon, Jan 6, 2025 at 9:14 AM, Bob Smith\n<bob@example.com>\nwrote:",
    "de": "Am 06.01.2025 um 09:14 schrieb Bob Smith <bob@example.com>:",
    "de-gmail": "Bob Smith <bob@example.com> schrieb am Mo., 6. Jan. 2025 um\n09:14 Uhr:",
    "fr": "Le lun. 6 janv. 2025 à 09:14, Bob Smith <bob@example.com> a écrit :",
    "es": "El lun, 6 ene 2025 a las 9:14, Bob Smith (<bob@example.com>) escribió:",
    "pt": "Em seg., 6 de jan. de 2025 às 09:14, Bob Smith <bob@example.com> escreveu:",
    "it": "Il giorno lun 6 gen 2025 alle ore 09:14 Bob <bob@example.com> ha scritto:",
    "nl": "Op ma 6 jan 2025 om 09:14 schreef Bob Smith <bob@example.com>:",
    "da": "Den 6. jan. 2025 kl. 09.14 skrev Bob Smith <bob@example.com>:",
    "sv": "mån 6 jan. 2025 kl. 09:14 skrev Bob Smith <bob@example.com>:",
    "pl": "Dnia 6 stycznia 2025 09:14 Bob Smith <bob@example.com> napisał(a):",
    "ru": "6 янв. 2025 г., в 09:14, Bob Smith <bob@example.com> написал:",
    "ja": "2025年1月6日(月) 9:14 Bob Smith <bob@example.com>:",
    "zh": "在 2025年1月6日，上午9:14，Bob Smith <bob@example.com> 写道：",
    "outlook-en": "From: Bob Smith <bob@example.com>\nSent: Monday, January 6, 2025 9:14 AM\n"
                  "To: Help Desk <help@example.com>\nSubject: Printer",
    "outlook-de": "Von: Bob Smith <bob@example.com>\nGesendet: Montag, 6. Januar 2025 09:14\n"
                  "An: Help Desk\nBetreff: Drucker",
    "outlook-fr": "De : Bob Smith <bob@example.com>\nEnvoyé : lundi 6 janvier 2025 09:14\n"
                  "À : Help Desk\nObjet : Imprimante",
    "outlook-es": "De: Bob Smith\nEnviado: lunes, 6 de enero de 2025 9:14\nPara: Help Desk\n"
                  "Asunto: Impresora",
    "outlook-bold": "*From:* Bob Smith [mailto:bob@example.com]\n*Sent:* Monday, January 6, "
                    "2025 9:14 AM\n*To:* Help Desk\n*Subject:* Printer",
    "original-en": "-----Original Message-----\nFrom: Bob Smith\nSent: 6 January 2025\n"
                   "Subject: Printer",
    "original-de": "-----Ursprüngliche Nachricht-----\nVon: Bob Smith\nGesendet: 6. Januar 2025",
    "forwarded": "---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
                 "Date: Mon, Jan 6, 2025 at 9:14 AM\nSubject: Printer\nTo: <help@example.com>",
}


@pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
def test_reply_ends_at_the_attribution_or_header_block(header: str) -> None:
    message = "The printer works again, thanks.\n\n" + header + OLD
    assert strip_reply(message) == "The printer works again, thanks."
    assert split_reply(message).text == "The printer works again, thanks."


@pytest.mark.parametrize("text", [
    "On Monday the server crashed.\nI restarted it at 9:15.",
    "On your remote host you can run:\n\n    telnet 127.0.0.1 52698",
    "Here is what the error wrote:\nDisk full",
    "Am Ende hat es geklappt: danke!",
    "From: the accounting team\nWe need three more laptops.",
    "Sent from my desk, is much easier than my mobile phone.",
    "From my side it works now.",
    "This is not a ---------- delimiter.",
    "Code:\n```\n-- not a signature\n> not a quote\n```\nDone.",
    "Problem\n=======\nThe VPN drops.\n\nSteps\n-----\n1. Connect.",
], ids=["on-sentence", "on-colon", "wrote-in-text", "am-sentence", "single-from",
        "sent-from-desk", "from-my-side", "dashes-in-line", "code-fence", "underlined-headings"])
def test_ordinary_text_is_kept_whole(text: str) -> None:
    assert strip_reply(text) == text


def test_signatures_go_and_the_closing_stays() -> None:
    message = "Works now.\n\nRegards,\nAnna\n\n-- \nAnna Berg | ACME IT\n+49 30 1234"
    assert strip_reply(message) == "Works now.\n\nRegards,\nAnna"
    reply = split_reply(message)
    assert (reply.body, reply.closing) == ("Works now.", "Regards,\nAnna")
    assert reply.signature == "-- \nAnna Berg | ACME IT\n+49 30 1234"
    assert strip_reply("Thanks!\n\nSent from my iPhone") == "Thanks!"
    assert strip_reply("Danke\n\nVon meinem iPhone gesendet") == "Danke"


def test_a_message_that_is_all_quote_is_returned_as_it_is() -> None:
    assert strip_reply("> only a quote\n> and more\n") == "> only a quote\n> and more"
    assert strip_reply("On Mon, Jan 6, 2025, Bob <b@x.com> wrote:\n> hi") == (
        "On Mon, Jan 6, 2025, Bob <b@x.com> wrote:\n> hi")
    assert split_reply("> only a quote").body == ""
    assert strip_reply("") == "" and strip_reply(" \n\n") == ""


def test_a_chain_of_nothing_but_attributions_is_empty() -> None:
    """Nested re-sends holding only "On ... wrote:" lines and empty quotes: no text at all
    (ert's spam_1); one written word anywhere in the chain keeps the whole original."""
    empty = "".join(">" * d + " On Thu, Apr 30, 2020 at 10:06 AM, a <a@example.com> wrote:\n"
                    + ">" * (d + 1) + "\n" for d in range(1, 6))
    assert strip_reply(empty) == ""
    assert strip_reply(empty + ">>>>>> hello\n") == (empty + ">>>>>> hello").strip()
    assert strip_reply("-----Original Message-----\nFrom: a\nSent: b\n") == ""


def test_a_bare_rule_above_the_quote_stays_in_the_reply_but_not_in_the_new_text() -> None:
    message = ("Outlook with a reply\n\n ------------------------------\n\n"
               "*From:* Bob [mailto:bob@example.com]\n*Sent:* Thursday, February 09, 2012\n"
               "*To:* help@example.com\n*Subject:* Printer\n\nold text\n")
    assert strip_reply(message) == "Outlook with a reply"
    reply = split_reply(message)
    assert reply.body == "Outlook with a reply\n\n ------------------------------"
    assert (reply.closing, reply.signature) == ("", "")
    signed = message.replace("reply\n", "reply\n\nRegards,\nAnna\n", 1)
    assert split_reply(signed).closing == "Regards,\nAnna\n\n ------------------------------"
    assert strip_reply(signed) == "Outlook with a reply\n\nRegards,\nAnna"


def test_a_bare_forward_keeps_the_forwarded_text() -> None:
    assert strip_reply(HEADERS["forwarded"] + "\n\nThe printer on floor 3 is jammed.") == (
        "The printer on floor 3 is jammed.")


def test_inline_answers_keep_their_quotes() -> None:
    message = ("On Mon, Jan 6, 2025 at 9:14 AM Bob <bob@example.com> wrote:\n"
               "> Which printer?\n\nThe one on floor 3.\n\n> Since when?\n\nToday.\n")
    assert strip_reply(message) == (
        "> Which printer?\n\nThe one on floor 3.\n\n> Since when?\n\nToday.")


def test_line_endings_do_not_matter() -> None:
    message = "New text\n\n" + HEADERS["de"] + OLD
    assert strip_reply(message.replace("\n", "\r\n")) == "New text"
    assert strip_reply(message.replace("\n", "\r")) == "New text"


def test_split_thread_lists_older_messages_newest_first() -> None:
    message = ("Third.\n\nOn Tue, Jan 7, 2025 at 8:00 AM Ann <ann@example.com> wrote:\n"
               "> Second.\n>\n> On Mon, Jan 6, 2025 at 9:14 AM Bob <bob@example.com> wrote:\n"
               ">> First.\n")
    thread = split_thread(message)
    assert [r.body for r in thread] == ["Third.", "> Second.", ">> First."]
    assert "Ann <ann@example.com>" in thread[1].header


def test_html_reply() -> None:
    markup = ('<div dir="ltr">Fixed, thanks.<br><br>Anna</div><div class="gmail_quote">'
              "On Mon, Jan 6, 2025 at 9:14 AM Bob &lt;bob@example.com&gt; wrote:<br>"
              "<blockquote>Is it <b>fixed</b>?</blockquote></div>")
    assert strip_reply_html(markup) == "Fixed, thanks.\n\nAnna"
    assert strip_reply_html("<p>Only a note</p><!-- unterminated") == "Only a note"


def test_only_max_lines_are_examined() -> None:
    many = strip_module.MAX_LINES + 100
    history = "Fixed.\n\n" + HEADERS["en"] + "\n" + "> old\n" * many
    assert strip_reply(history) == "Fixed."
    log = "\n".join(f"line {i}" for i in range(many))
    assert strip_reply(log) == log  # no end seen in the examined lines: nothing is lost
    quoted = "> old\n" * many
    assert strip_reply(quoted) == quoted.strip()  # all quoted: the whole original


# Big enough that quadratic work would hang the run; bench/strip.py measures the real cost.
HOSTILE = {
    "gt-run": ">" * 500_000,
    "name-gt": "Richard>" * 50_000,
    "dashes": "-" * 500_000,
    "attributions": "On 1 Jan 2020, a wrote:\n" * 4_000,
    "inline-headers": "text\nOn 1 Jan 2020, a <a@b.c> wrote:\n> q\ntext\n" * 2_000,
    "wrapped-attribution": ("On 12:00 " + "x " * 150 + "<\n") * 2_000,
    "emails": ("1 12:00 " + "a." * 150 + "@b.c\n") * 2_000,
    "header-fields": "From: a\nSent: b\n" * 4_000,
    "nested-quotes": "".join(">" * i + " text\n" for i in range(1_000)),
    "taglines": ("Sent from my " + "x " * 90 + "\n") * 2_000,
    "blank-lines": "\n" * 200_000,
}
HOSTILE_HTML = {
    "open-comments": "<!--" * 100_000,
    "open-end-tags": "</" * 100_000,
    "open-tag": "<" * 500_000,
    "deep-blockquotes": "<blockquote>" * 20_000 + "a<br>" * 20_000,
    "signature-marks": 'a<div class="gmail_signature" id="Signature">x' * 50_000,
    "long-marked-tag": "a<div " + "class=sig " * 100_000 + ">x",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_completes(text: str) -> None:
    assert isinstance(strip_reply(text), str)
    assert split_thread(text)


@pytest.mark.parametrize("markup", HOSTILE_HTML.values(), ids=HOSTILE_HTML.keys())
def test_hostile_html_completes(markup: str) -> None:
    assert isinstance(strip_reply_html(markup), str)


def test_long_quote_completes_with_the_new_text() -> None:
    """erp's 767 KB ReDoS case: 59 KB and 707 KB lines of '>' between the reply lines."""
    _require_corpus()
    text = (REPLIES / "email_reply_parser" / "email_long_quote.body.txt").read_text()
    result = strip_reply(text)
    assert result.startswith("Hi folks\n\nWhat is the best way to clear a Riak bucket")
    assert result.endswith("I am currently using the Java HTTP API.\n\n-Abhishek Kona")
    assert "riak-users" not in result  # the mailing-list footer under the rule is gone
    assert split_reply(text).closing == "-Abhishek Kona"


# --- the language table: attributions, header blocks and mobile taglines (issue 15) ----

ATTRIBUTIONS = {
    'wrapped-4': 'Fixed now.\n\nOn Mon, Jan 6, 2025 at 9:14 AM\nBob Smith\n<bob@example.com>\nwrote:\n\n> old\n',
    'it-wrapped': 'Risolto.\n\nIl giorno lun 6 gen 2025 alle ore 09:14 Bob Smith <\nbob@example.com> ha scritto:\n\n> old\n',
    'fi': 'Korjattu.\n\nma 6.1.2025 klo 9.14 Bob Smith (bob@example.com) kirjoitti:\n\n> old\n',
    'fi-wrapped': 'Korjattu.\n\nma 6.1.2025 klo 9.14 Bob Smith\n<bob@example.com> kirjoitti:\n\n> old\n',
    'fi-3-lines': 'Korjattu.\n\nma 6.1.2025 klo 9.14\nBob Smith\n<bob@example.com> kirjoitti:\n\n> old\n',
    'cs': 'Opraveno.\n\nDne po 6. 1. 2025 9:14 uživatel Bob Smith <bob@example.com> napsal:\n\n> old\n',
    'cs-gmail': 'Opraveno.\n\npo 6. 1. 2025 v 9:14 odesílatel Bob Smith <bob@example.com> napsal:\n\n> old\n',
    'cs-tb': 'Opraveno.\n\nDne 06. 01. 25 v 9:14 Bob Smith napsal(a):\n\n> old\n',
    'ru-tb': 'Исправлено.\n\n06.01.2025 9:14, Bob Smith пишет:\n\n> old\n',
    'ru-gmail': 'Исправлено.\n\nпн, 6 янв. 2025 г. в 09:14, Bob Smith <bob@example.com>:\n\n> old\n',
    'no': 'Fikset.\n\nman. 6. jan. 2025 kl. 09:14 skrev Bob Smith <bob@example.com>:\n\n> old\n',
    'zh-gmail': '已修复。\n\nBob Smith <bob@example.com> 于2025年1月6日周一 09:14写道：\n\n> old\n',
    'zh-tw': '已修復。\n\nBob Smith <bob@example.com> 於 2025年1月6日 週一 上午9:14寫道：\n\n> old\n',
    'ja-gmail': '直りました。\n\n2025年1月6日(月) 9:14 Bob Smith <bob@example.com>:\n\n> old\n',
    'ja-apple': '直りました。\n\n2025/01/06 9:14、Bob Smith <bob@example.com>のメール:\n\n> old\n',
    'pl-tb': 'Naprawione.\n\nW dniu 6.01.2025 o 09:14, Bob Smith pisze:\n\n> old\n',
    'pl-gmail': 'Naprawione.\n\npon., 6 sty 2025 o 09:14 Bob Smith <bob@example.com> napisał(a):\n\n> old\n',
    'pt-br': 'Resolvido.\n\nEm seg., 6 de jan. de 2025 às 09:14, Bob Smith <bob@example.com>\nescreveu:\n\n> old\n',
    'fr-wrapped': 'Réparé.\n\nLe lun. 6 janv. 2025 à 09:14, Bob Smith <bob@example.com> a\nécrit :\n\n> old\n',
    'de-tb': 'Behoben.\n\nAm 06.01.25 um 09:14 schrieb Bob Smith:\n\n> old\n',
    'nl-gmail': 'Opgelost.\n\nOp ma 6 jan 2025 om 09:14 schreef Bob Smith <\nbob@example.com>:\n\n> old\n',
    'sv-gmail': 'Fixat.\n\nmån 6 jan. 2025 kl. 09:14 skrev Bob Smith <bob@example.com>:\n\n> old\n',
    'da-apple': 'Løst.\n\n> Den 6. jan. 2025 kl. 09.14 skrev Bob Smith <bob@example.com>:\n> \n> old\n',
    'es-wrapped': 'Arreglado.\n\nEl lun, 6 ene 2025 a las 9:14, Bob Smith (<bob@example.com>)\nescribió:\n\n> old\n',
    'en-apple': 'Fixed.\n\n> On 6 Jan 2025, at 09:14, Bob Smith <bob@example.com> wrote:\n> \n> old\n',
    'en-outlook-web': 'Fixed.\n\n________________________________\nFrom: Bob Smith <bob@example.com>\nSent: Monday, January 6, 2025 9:14 AM\nTo: Help\nSubject: Printer\n\nold\n',
    'sv-outlook': 'Fixat.\n\nFrån: Bob Smith <bob@example.com>\nSkickat: den 6 januari 2025 09:14\nTill: Help\nÄmne: Skrivare\n\nold\n',
    'cs-outlook': 'Opraveno.\n\nOd: Bob Smith <bob@example.com>\nOdesláno: pondělí 6. ledna 2025 9:14\nKomu: Help\nPředmět: Tiskárna\n\nold\n',
    'fi-outlook': 'Korjattu.\n\nLähettäjä: Bob Smith <bob@example.com>\nLähetetty: maanantai 6. tammikuuta 2025 9.14\nVastaanottaja: Help\nAihe: Tulostin\n\nold\n',
    'it-outlook': 'Risolto.\n\nDa: Bob Smith <bob@example.com>\nInviato: lunedì 6 gennaio 2025 09:14\nA: Help\nOggetto: Stampante\n\nold\n',
    'pl-outlook': 'Naprawione.\n\nOd: Bob Smith <bob@example.com>\nWysłano: poniedziałek, 6 stycznia 2025 09:14\nDo: Help\nTemat: Drukarka\n\nold\n',
    'ru-outlook': 'Исправлено.\n\nОт: Bob Smith <bob@example.com>\nОтправлено: 6 января 2025 г. 9:14\nКому: Help\nТема: Принтер\n\nold\n',
    'ja-outlook': '直りました。\n\n差出人: Bob Smith <bob@example.com>\n送信日時: 2025年1月6日 9:14\n宛先: Help\n件名: プリンター\n\nold\n',
    'zh-outlook': '已修复。\n\n发件人: Bob Smith <bob@example.com>\n发送时间: 2025年1月6日 9:14\n收件人: Help\n主题: 打印机\n\nold\n',
    'cs-fwd': 'Posílám dál.\n\n---------- Přeposlaná zpráva ---------\nOd: Bob <bob@example.com>\nDate: po 6. 1. 2025 9:14\nSubject: Tiskárna\n\nold\n',
}
TAGLINES = {
    'en': 'Sent from my iPhone',
    'en-app': 'Sent with Spark',
    'en-outlook': 'Get Outlook for iOS<https://aka.ms/o0ukef>',
    'de': 'Von meinem iPhone gesendet',
    'de-app': 'Gesendet mit der GMX Mail App',
    'de-outlook': 'Outlook für iOS beziehen<https://aka.ms/o0ukef>',
    'fr': 'Envoyé de mon iPhone',
    'fr-outlook': 'Obtenir Outlook pour Android<https://aka.ms/ghei36>',
    'es': 'Enviado desde mi iPhone',
    'es-outlook': 'Obtener Outlook para iOS',
    'it': 'Inviato da iPhone',
    'it-outlook': 'Scarica Outlook per Android',
    'pt': 'Enviado do meu iPhone',
    'pt-outlook': 'Obter o Outlook para Android',
    'nl': 'Verstuurd vanaf mijn iPhone',
    'nl-outlook': 'Outlook voor iOS downloaden',
    'sv': 'Skickat från min iPhone',
    'no': 'Sendt fra min iPhone',
    'da': 'Sendt fra min iPhone',
    'fi': 'Lähetetty iPhonesta',
    'pl': "Wysłano z mojego iPhone'a",
    'pl2': "Wysłane z iPhone'a",
    'cs': 'Odesláno z iPhonu',
    'ru': 'Отправлено с iPhone',
    'ru-mailru': 'Отправлено из мобильной Почты Mail.ru',
    'ja': 'iPhoneから送信',
    'zh': '发自我的iPhone',
    'zh2': '从我的 iPhone 发送',
    'zh-tw': '從我的 iPhone 傳送',
    'samsung': 'Sent from my Galaxy',
    'android': 'Sent from my Android device',
}


@pytest.mark.parametrize("message", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_attributions_and_header_blocks_in_many_languages_and_layouts(message: str) -> None:
    """Single-line and wrapped forms of Gmail, Outlook, Apple Mail, Thunderbird and
    mobile clients; the name and the address may stand on lines of their own."""
    assert strip_reply(message) == message.split("\n\n")[0]


@pytest.mark.parametrize("tagline", TAGLINES.values(), ids=TAGLINES.keys())
def test_mobile_taglines_in_many_languages_and_apps(tagline: str) -> None:
    assert strip_reply("Thanks!\n\n" + tagline) == "Thanks!"
    with_text_after = ("Thanks!\n\n" + tagline + "\nBob Smith\nIT desk, floor 3\n\n"
                       "On Mon, Jan 6, 2025 at 9:14 AM Bob <bob@example.com> wrote:\n> old")
    assert strip_reply(with_text_after) == "Thanks!"
    reply = split_reply("Thanks!\n\n" + tagline + "\nBob Smith")
    assert reply.body == "Thanks!" and reply.signature == tagline + "\nBob Smith"


def test_a_tagline_with_a_long_text_under_it_is_not_a_signature() -> None:
    message = ("Printer broken.\n\nSent from my iPhone while walking to the office\n"
               + "".join(f"Step {i}: I pressed the button and nothing happened.\n" for i in range(8)))
    assert strip_reply(message) == message.strip()


def test_a_line_above_an_attribution_joins_it_only_when_it_opens_one() -> None:
    message = "Call me tomorrow\n<bob@example.com> wrote:\n> old question"
    assert strip_reply(message) == "Call me tomorrow"
    wrapped = "Fine.\n\nma 6.1.2025 klo 9.14\nBob Smith\n<bob@example.com> kirjoitti:\n> old"
    assert split_thread(wrapped)[1].header == "ma 6.1.2025 klo 9.14\nBob Smith\n<bob@example.com> kirjoitti:"


# --- HTML-only replies as the desk reads them: parse() renders, strip_reply() cuts ----

SIGNATURE_BLOCKS = {
    "gmail": '<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature">',
    "thunderbird": '<div class="moz-signature">',
    "apple": '<div id="AppleMailSignature" dir="ltr">',
    "outlook-web": '<div id="Signature">',
    "outlook-mobile": '<div id="ms-outlook-mobile-signature">',
    "yahoo": '<div class="ymail_android_signature">',
    "proton": '<div class="protonmail_signature_block">',
    "roundcube": '<div id="_rc_sig">',
    "zimbra": '<div data-marker="__SIG_PRE__">',
    "spark": '<div name="messageSignatureSection">',
}


def _html_mail(markup: str) -> bytes:
    return ("From: Anna <anna@example.com>\nTo: help@example.com\nSubject: Re: Printer\n"
            "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n" + markup).encode()


@pytest.mark.parametrize("opening", SIGNATURE_BLOCKS.values(), ids=SIGNATURE_BLOCKS.keys())
def test_an_html_signature_block_the_client_marked_is_the_signature(opening: str) -> None:
    markup = (f"<div>Fixed, <b>thanks</b>.</div>{opening}<p>Anna Berg</p><p>ACME IT, "
              "+49 30 1234</p></div>")
    text = parse(_html_mail(markup)).text
    assert "Anna Berg" in text and "ACME IT" in text       # the message keeps it all
    assert strip_reply(text) == "Fixed, thanks."
    assert strip_reply_html(markup) == "Fixed, thanks."
    unmarked = markup.replace(opening, "<div>")
    assert "Anna Berg" in strip_reply(parse(_html_mail(unmarked)).text)


def test_an_html_only_reply_loses_its_blockquote_without_an_attribution() -> None:
    markup = ("<div>The one on floor 3.</div><blockquote type='cite'><div>Which printer?"
              "</div><div>Since when?<blockquote>Older</blockquote></div></blockquote>")
    text = parse(_html_mail(markup)).text
    assert text == "The one on floor 3.\n\n> Which printer?\n\n> Since when?\n> > Older"
    assert strip_reply(text) == "The one on floor 3."
    assert strip_reply_html(markup) == "The one on floor 3."


def test_a_signature_block_holding_everything_written_is_not_cut() -> None:
    """Some clients let the sender type into the signature's element (iOS Mail, webmail
    editors): a mark above all the text written is no signature start."""
    markup = ('<div id="AppleMailSignature">The badge reader is broken.<br><br>Sent from my '
              "iPhone</div><blockquote type='cite'>Old question</blockquote>")
    assert strip_reply(parse(_html_mail(markup)).text) == "The badge reader is broken."
    assert strip_reply_html(markup) == "The badge reader is broken."
