"""How well the parse stage decodes Subject, From and body, against a reference parser, run by hand.

    .venv/bin/python bench/fidelity.py [CORPUS_DIR] [--show N]

Issue 15's target: decode From, Subject and body as well as the best mail parsers do (>= 98 %
of subjects, >= 97 % of bodies). For every .eml of ../shared/corpus this parses the mail with
daemon.pipeline.parse and with the Python standard library's modern parser
(email.policy.default, RFC 2047/2231-aware and strict about charsets), and compares the
three fields after whitespace is collapsed (From: the address, none without a domain) (an HTML-only body is rendered to text by
daemon.pipeline.html_text for both, so only decoding is compared, not HTML rendering).

A field counts as "as good" when both agree; when they differ and ours shows no sign of
damage while the reference's does; or, for the body, when ours is the reference's text
followed by more (the further inline text parts a mail client also shows, e.g. a list
footer: counted apart as "ours shows more"). Signs of damage: an encoded word left undecoded
("=?utf-8?..."), U+FFFD, quoted-printable escapes or soft line breaks left in the text
("=E2=80=99", "h= ttps"), NUL and C1 control characters, ISO-2022 escape sequences,
mojibake (a word that is UTF-8 read as Latin-1, windows-1252 or windows-1251: "ProtecciГіn"),
one of the mail's own MIME boundaries in the body, uuencoded or base64 data in the text, an
empty field where the other has text, or the parser raising. A difference where both or
neither look damaged is counted as "differs" (not as good), and listed with --show N. A
refused mail (our ParseError, e.g. too many parts) is counted apart: it is quarantined with
its reason, not decoded.
"""
from __future__ import annotations

import argparse
import logging
import email
import email.policy
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.errors import ParseError  # noqa: E402
from daemon.pipeline.html_text import html_to_text  # noqa: E402
from daemon.pipeline.parse import parse  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
FIELDS = ("from", "subject", "body")
DAMAGE = re.compile(r"=\?[\w-]+\?[bq]\?|\ufffd|(?:=[0-9A-F]{2}){2}|\w= \w|[\x00\x80-\x9f]|\x1b[$(]"
                    r"|\bbegin [0-7]{3} \S+ M", re.IGNORECASE)
RUN64 = re.compile(r"[A-Za-z0-9+/]{76,}")
CLOSING_DELIMITER = re.compile(r"--(\S{10,70}?)--")
BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\s]{4,200})', re.IGNORECASE)
NON_ASCII_WORD = re.compile(r"\S*[^\x00-\x7f]\S*")


def _mojibake(text: str) -> bool:
    """A word that reads as UTF-8 once put back into a single-byte charset."""
    for word in NON_ASCII_WORD.findall(text)[:200]:
        for codec in ("latin-1", "cp1252", "cp1251"):
            try:
                if word.encode(codec).decode("utf-8") != word:
                    return True
            except UnicodeError:
                continue
    return False


def _data(text: str) -> bool:
    """base64 data in the text: a long run of mixed letters and digits (not "//////")."""
    return any(any(c.isdigit() for c in run) and not run.isupper() and not run.islower()
               for run in RUN64.findall(text))


def _delimiters(text: str, boundaries: tuple[str, ...]) -> bool:
    """A MIME boundary in the text: one the mail declares, or an opening and a closing
    delimiter of the same undeclared one ("--X ... --X--")."""
    return any("--" + b in text for b in boundaries) or any(
        any(c.isalnum() for c in m.group(1)) and text.count("--" + m.group(1)) >= 2
        for m in CLOSING_DELIMITER.finditer(text))


def damaged(text: str, boundaries: tuple[str, ...] = ()) -> bool:
    return bool(DAMAGE.search(text)) or _mojibake(text) or _data(text) or _delimiters(text, boundaries)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _address(value: str) -> str:
    """The sender's address as the desk uses it: none unless it has a domain ("<>" and a
    bare "MAILER-DAEMON" are no address to answer)."""
    return value.lower() if "@" in value else ""


def ours(raw: bytes) -> dict[str, str]:
    msg = parse(raw)
    sender = msg.from_addr.email if msg.from_addr else ""
    return {"from": _address(sender), "subject": _norm(msg.subject), "body": _norm(msg.text)}


def reference(raw: bytes) -> dict[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    sender = ""
    try:
        addresses = msg["from"].addresses if msg["from"] is not None else ()
        sender = addresses[0].addr_spec if addresses else ""
    except Exception:  # noqa: BLE001 - a reference that fails is what we measure
        sender = ""
    try:
        subject = str(msg["subject"] or "")
    except Exception:  # noqa: BLE001
        subject = ""
    part = msg.get_body(preferencelist=("plain", "html"))
    body = ""
    if part is not None:
        try:
            body = part.get_content()
        except Exception:  # noqa: BLE001
            body = ""
        if part.get_content_type() == "text/html":
            body = html_to_text(body)
    return {"from": _address(sender), "subject": _norm(subject), "body": _norm(body)}


def judge(mine: str, theirs: str | None, boundaries: tuple[str, ...] = (), more: bool = False) -> str:
    """'agree', 'better' (ours clean, theirs damaged or failed), 'more' (ours is theirs and
    more) or 'differs'."""
    if theirs is not None and mine == theirs:
        return "agree"
    mine_bad = damaged(mine, boundaries) or (not mine and bool(theirs))
    theirs_bad = theirs is None or damaged(theirs, boundaries) or (not theirs and bool(mine))
    if theirs_bad and not mine_bad:
        return "better"
    return "more" if more and theirs and mine.startswith(theirs) and not mine_bad else "differs"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    ap.add_argument("--show", type=int, default=0, help="print the first N differences of each field")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)           # mail-parser logs every part it does not handle
    files = sorted(Path(args.corpus).rglob("*.eml"))
    tally = {f: Counter() for f in FIELDS}
    refused, shown = 0, Counter()
    for path in files:
        raw = path.read_bytes()
        try:
            mine = ours(raw)
        except ParseError:
            refused += 1
            continue
        try:
            theirs: dict[str, str | None] = reference(raw)
        except Exception:  # noqa: BLE001 - the reference parser gave up on the whole mail
            theirs = dict.fromkeys(FIELDS)
        boundaries = tuple(b.decode("ascii", "replace") for b in BOUNDARY.findall(raw))
        for field in FIELDS:
            verdict = judge(mine[field], theirs[field], *((boundaries, True) if field == "body" else ()))
            tally[field][verdict] += 1
            if verdict == "differs" and shown[field] < args.show:
                shown[field] += 1
                print(f"{field} {path.relative_to(args.corpus)}\n  ours:      {mine[field][:160]!r}\n"
                      f"  reference: {(theirs[field] or '')[:160]!r}")
    decoded = len(files) - refused
    print(f"{len(files)} .eml files: {decoded} decoded, {refused} refused (quarantined with a reason)")
    for field in FIELDS:
        t = tally[field]
        good = t["agree"] + t["better"] + t["more"]
        print(f"{field:<8} as good as the reference {good / max(decoded, 1):7.2%}   agree {t['agree']:4d}"
              f"   ours clean where it is damaged {t['better']:3d}   ours shows more {t['more']:3d}"
              f"   differ {t['differs']:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
