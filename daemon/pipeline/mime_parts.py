"""The MIME tree walk of the parse stage: text body, HTML body, attachments, machine views.

`BodyParts.collect(tree)` walks a parsed MIME tree once (iteratively) and sorts every
leaf the way a mail client shows it: the body text (text/plain parts that are not files),
the first HTML part, and attachments (named parts, `attachment` dispositions, attached
messages and every other non-text part, with `inline` set for parts shown inside the
body). Repairs for mail that is slightly broken, each recorded as a defect:
* a Content-Transfer-Encoding with junk around it (`"Quoted-Printable"`, `base64;`) is
  read as the encoding it names; a text part with no encoding declared whose content is
  plainly quoted-printable (soft line breaks, `=C3=A9` escapes) is decoded as such;
* a multipart whose boundary was not found, or a text part whose body is MIME parts
  (a lost Content-Type), is re-read with the boundary its delimiter lines show;
* a delimiter line of a declared boundary left inside a text part ends that text;
* uuencoded files inside a text part (`begin 644 name` ... `end`) become attachments;
* a text part over the text limit is cut, and kept whole as an attachment;
* quoted-printable lines with white space a transport added after them (RFC 2045 6.7:
  "= " before the line break is still a soft break) are read without it.
An empty text part next to HTML gives way to the HTML's text; a format=flowed part is
unflowed (daemon.pipeline.flowed); an HTML part with no charset parameter is read by the
charset its <meta> names; an attached message without a name is named by its Subject.
Pure: no I/O, no logging.
"""
from __future__ import annotations

import binascii
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Compat32

from daemon.model import AttachmentPart
from daemon.pipeline import addresses as hdr
from daemon.pipeline.flowed import unflow
from daemon.pipeline.html_text import html_to_text
from daemon.pipeline.header_caps import cap_headers
from daemon.pipeline.machine import PartView

VIEW_CHARS = 65536
_RAW_FILENAME = re.compile(r'(?:^|;)\s*(?:file)?name\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.I)
_CTE_WORD = re.compile(r"[a-z0-9_-]+")
_CTE_NAMES = {"quoted-printable": "quoted-printable", "quoted_printable": "quoted-printable",
              "quotedprintable": "quoted-printable", "qp": "quoted-printable",
              "base64": "base64", "base-64": "base64", "7bit": "7bit", "8bit": "8bit",
              "binary": "binary", "x-uuencode": "x-uuencode", "uuencode": "x-uuencode",
              "x-uue": "x-uuencode", "uue": "x-uuencode"}
_ENCODED_WORD = re.compile(rb"=\?[^?\s]{1,64}\?[QqBb]\?[^?]*\?=")
_QP_HIGH = re.compile(rb"=[89A-F][0-9A-F]")
_HIDDEN_DELIMITER = re.compile(rb"^--([^\s\"]{1,200})[ \t]*\n(?=content-[\w-]+[ \t]*:)",
                               re.I | re.M)
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\n]{1,255})\n", re.M)
_UU_END = re.compile(r"^end[ \t]*$", re.M)
_UU_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
             "pdf": "application/pdf", "zip": "application/zip", "txt": "text/plain",
             "doc": "application/msword", "xls": "application/vnd.ms-excel"}
_MAX_RECOVERIES = 5
_QP_PADDED = re.compile(rb"[ \t]+$", re.M)
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?([\w.:-]{1,40})", re.I)


class AsReceived(Compat32):
    """Write parsed header values back as they arrived. compat32 re-encodes each one
    through email.header.Header, which is slow (quadratic: 200 fields of 998 bytes took
    6 s) and can change the bytes."""

    def fold(self, name: str, value: object) -> str:
        if isinstance(value, str):
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: object) -> bytes:
        if isinstance(value, str):
            try:
                return f"{name}: {value}{self.linesep}".encode("ascii", "surrogateescape")
            except UnicodeError:
                pass
        return super().fold_binary(name, value)


AS_RECEIVED = AsReceived()


def children(part: Message) -> list[Message]:
    """The sub-parts of a multipart or message/* part (never decodes a leaf's payload:
    compat32 would run it through its declared charset, which may be `idna`)."""
    if not part.is_multipart() or part.get_content_type() == "message/delivery-status":
        return []
    return [p for p in part.get_payload() if isinstance(p, Message)]


@dataclass
class BodyParts:
    """Collects text, HTML, attachments and machine views while walking the tree.
    `check` enforces the part limits on a tree recovered here (it raises ParseError)."""

    max_chars: int
    check: Callable[[Message], None] = lambda _: None
    boundaries: set[str] = field(default_factory=set)   # of the multiparts walked so far
    texts: list[str] = field(default_factory=list)
    html: str | None = None
    attachments: list[AttachmentPart] = field(default_factory=list)
    views: list[PartView] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    named_inline: tuple[str, str] | None = None    # (type, text) of a named inline text part
    recoveries: int = 0

    def text(self) -> str:
        texts = [t for t in self.texts if t.strip()]
        if texts:
            return "\n\n".join(texts)
        if self.html is not None and self.html.strip():
            return html_to_text(self.html)
        ctype, text = self.named_inline or ("", "\n\n".join(self.texts))
        return html_to_text(text) if ctype == "text/html" else text

    def collect(self, msg: Message) -> None:
        stack: list[tuple[Message, bool]] = [(msg, False)]
        while stack:
            part, attached = stack.pop()
            ctype = part.get_content_type()
            if not attached and not part.is_multipart() and ctype.startswith("multipart/"):
                found = self._recover(part, ctype, part.get_payload(decode=True))
                part, ctype = (found, found.get_content_type()) if found is not None else (part, ctype)
            if part.is_multipart() and ctype.startswith("multipart/"):
                if (boundary := part.get_boundary()) and len(boundary) >= 4:
                    self.boundaries.add(boundary)     # a short one could match text
                attached = attached or part.get_content_disposition() == "attachment"
                report = param(part, "report-type") if ctype == "multipart/report" else ""
                self.views.append(PartView(ctype, report_type=report))
                stack.extend((p, attached) for p in reversed(children(part)))
            elif (found := self._leaf(part, ctype, attached)) is not None:
                stack.append((found, attached))   # a text part that was MIME parts

    def _recover(self, part: Message, ctype: str, payload: object) -> Message | None:
        """A multipart re-read with the boundary its delimiter lines show, when the
        declared one was not found or the part claims to be text (`payload`: its bytes)."""
        if self.recoveries >= _MAX_RECOVERIES or not isinstance(payload, bytes) or (
                b"\n--" not in payload[:65536] and not payload.startswith(b"--")):
            return None
        m = _HIDDEN_DELIMITER.search(payload, 0, 65536)
        if m is None or (ctype == "text/plain" and (len(payload[:m.start()].strip()) > 200 or (
                b"\n--" + m.group(1) + b"--") not in payload)):
            return None                      # a text part that quotes MIME source is text
        subtype = ctype if ctype.startswith("multipart/") else "multipart/mixed"
        head = f'Content-Type: {subtype}; boundary="'.encode() + m.group(1) + b'"\n\n'
        text, cuts = cap_headers((head + payload).replace(b"\r\n", b"\n"))   # its parts' headers too
        self.defects += cuts
        tree = message_from_bytes(text, policy=AS_RECEIVED)
        if not tree.is_multipart() or not children(tree):
            return None
        self.check(tree)
        self.recoveries += 1
        self.defects.append(f"{ctype} re-read as {subtype} with boundary found in its body")
        return tree

    def _leaf(self, part: Message, ctype: str, attached: bool) -> Message | None:
        """Sort one leaf; a text part whose body turns out to be MIME parts is returned
        as the tree re-read from it, to be walked."""
        filename = _filename(part) or _message_name(part, ctype)
        as_file = attached or filename is not None or \
            part.get_content_disposition() == "attachment" or ctype.startswith("message/")
        if not as_file and (ctype == "text/plain" or ctype.startswith("multipart/")):
            data = payload_bytes(part, ctype, self.defects)
            if ctype == "text/plain" and (tree := self._recover(part, ctype, data)) is not None:
                return tree
            self.texts.append(self._text_part(part, ctype, data))
            self.views.append(PartView("text/plain", self.texts[-1][:VIEW_CHARS]))
        elif not as_file and ctype == "text/html" and self.html is None:
            self.html = self._decode(part, ctype, keep_whole=True)
            self.views.append(PartView(ctype, ""))
        else:
            if self.named_inline is None and not attached and ctype in ("text/plain", "text/html") \
                    and part.get_content_disposition() != "attachment":
                self.named_inline = (ctype, self._decode(part, ctype))
            self._attach(part, ctype, filename, _part_bytes(part, ctype, self.defects))
            self.views.append(PartView(ctype, _view_text(part, ctype)))
        return None

    def _attach(self, part: Message, ctype: str, filename: str | None, data: bytes) -> None:
        disposition = part.get_content_disposition()
        self.attachments.append(AttachmentPart(
            filename=hdr.display_filename(filename, len(self.attachments) + 1, ctype),
            content_type=ctype, data=data, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            inline=disposition == "inline" or (disposition is None and "Content-ID" in part)))

    def _text_part(self, part: Message, ctype: str, data: bytes) -> str:
        """A body text part: decoded, cut at a leaked delimiter, uuencoded files taken out."""
        text = self._decode(part, ctype, keep_whole=True, data=data)
        for boundary in self.boundaries:
            if ("--" + boundary) in text and (m := _delimiter_line(boundary).search(text)):
                text = text[:m.start()]
                self.defects.append("a MIME delimiter line ended a text part")
        if "begin " in text and "\nend" in text:
            text = self._uudecode(text)
        if param(part, "format").lower() == "flowed":
            text = unflow(text, delsp=param(part, "delsp").lower() == "yes")
        return text

    def _uudecode(self, text: str) -> str:
        kept, pos = [], 0
        for m in _UU_BEGIN.finditer(text):
            if m.start() < pos:
                continue
            end = _UU_END.search(text, m.end())
            if end is None or len(self.attachments) >= 100:
                break
            data = _uu_bytes(text[m.end():end.start()])
            if data is None:
                continue
            kept.append(text[pos:m.start()])
            name = m.group(1).strip()
            ctype = _UU_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
            self._attach(Message(), ctype, name, data)
            self.defects.append("a uuencoded file in a text part became an attachment")
            pos = end.end()
        kept.append(text[pos:])
        return "".join(kept) if pos else text

    def _decode(self, part: Message, ctype: str, keep_whole: bool = False,
                data: bytes | None = None) -> str:
        data = payload_bytes(part, ctype, self.defects) if data is None else data
        declared = part.get_content_charset()
        if declared is None and ctype == "text/html" and (meta := _META_CHARSET.search(data, 0, 4096)):
            declared = meta.group(1).decode("ascii").lower()
        text, used = hdr.decode_text(data, declared)
        if declared and used != hdr.codec_for(declared):
            self.defects.append(hdr.sanitize(f"charset {declared} unusable, read as {used}")[:160])
        if len(text) > self.max_chars:
            text = text[:self.max_chars]
            self.defects.append(f"body cut at {self.max_chars} characters")
            if keep_whole:                              # nothing is lost: the part is attached
                self._attach(part, ctype, _filename(part), data)
        return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _delimiter_line(boundary: str) -> re.Pattern[str]:
    return re.compile(r"^--" + re.escape(boundary) + r"(?:--)?[ \t]*$", re.M)


def _uu_bytes(block: str) -> bytes | None:
    out = bytearray()
    try:
        for line in block.split("\n"):
            if line.strip() and line.strip() != "`":
                try:
                    out += binascii.a2b_uu(line)
                except binascii.Error:
                    out += _uu_line(line)
    except (binascii.Error, ValueError):
        return None
    return bytes(out)


def _uu_line(line: str) -> bytes:
    """A uuencoded line that binascii refuses: trailing spaces lost in transit, or a
    last group with junk in its unused character. Decoded whole, cut to its count."""
    count = (ord(line[0]) - 32) & 63
    body = line[1:].rstrip().ljust((count + 2) // 3 * 4)
    whole = chr(32 + min(63, len(body) // 4 * 3)) + body[:len(body) // 4 * 4]
    return binascii.a2b_uu(whole)[:count]


def transfer_encoding(part: Message) -> str:
    """The Content-Transfer-Encoding named by the header, junk around it ignored ("")."""
    value = part.get("Content-Transfer-Encoding")
    if value is None:
        return ""
    m = _CTE_WORD.search(str(value).lower())
    return _CTE_NAMES.get(m.group(0), m.group(0)) if m else ""


def payload_bytes(part: Message, ctype: str, defects: list[str], *, sniff_qp: bool = True) -> bytes:
    """The decoded content of a leaf part (see the module docstring for the repairs);
    `sniff_qp` False for files, which are kept as sent."""
    cte = transfer_encoding(part)
    declared = str(part.get("Content-Transfer-Encoding", "")).lower()
    if cte != declared and cte in ("quoted-printable", "base64", "x-uuencode"):
        part.replace_header("Content-Transfer-Encoding", cte)
        defects.append(hdr.sanitize(f"Content-Transfer-Encoding {declared!r} read as {cte}")[:160])
    data = part.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    if cte == "quoted-printable" and isinstance(raw := part.get_payload(), str) and (
            " \n" in raw or "\t\n" in raw):
        try:
            data = binascii.a2b_qp(_QP_PADDED.sub(b"", raw.encode("utf-8", "surrogateescape")))
        except UnicodeError:
            pass                            # keep the library's reading
    if sniff_qp and cte in ("", "7bit", "8bit", "binary") and ctype.startswith("text/") and _looks_qp(data):
        defects.append(f"{ctype} part without an encoding read as quoted-printable")
        return binascii.a2b_qp(data)
    return data


def _looks_qp(data: bytes) -> bool:
    """Plainly quoted-printable, though not declared so: 7-bit, no line over 78
    characters, and either soft line breaks at the line-length limit or escaped 8-bit
    bytes (outside encoded words) that read as UTF-8."""
    sample = data[:65536]
    if b"=\n" not in sample and not _QP_HIGH.search(sample) or not sample.isascii():
        return False
    lines = sample.split(b"\n")
    if max(map(len, lines)) > 78:
        return False
    soft = sum(1 for line in lines if len(line) >= 70 and line.endswith(b"=") and not line.endswith(b"=="))
    if soft >= 2:
        return True
    if b"=?" in sample:
        sample = _ENCODED_WORD.sub(b"", sample)
    if len(_QP_HIGH.findall(sample)) < 3:
        return False
    try:
        binascii.a2b_qp(sample).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _filename(part: Message) -> str | None:
    """The filename/name parameter; raw 8-bit bytes are kept for our own decoding
    (compat32 turns them into U+FFFD). A blank name (KMail: name=" ") is no name."""
    name = part.get_filename()
    if name and "\ufffd" in name:
        raw = dict((k.lower(), v) for k, v in reversed(list(part.raw_items())))
        for value in (raw.get("content-disposition"), raw.get("content-type")):
            if isinstance(value, str) and (m := _RAW_FILENAME.search(value)):
                name = m.group(1).strip().strip('"')
                break
    return name if name and name.strip() else None


def _message_name(part: Message, ctype: str) -> str | None:
    """An attached message without a file name is shown by its Subject, as clients do."""
    inner = children(part) if ctype in ("message/rfc822", "message/global") else []
    subject = hdr.header_text(str(inner[0].get("Subject", ""))) if inner else ""
    subject = subject.replace("/", "_").replace("\\", "_").strip(" .")[:120]
    return subject + ".eml" if subject else None


def param(part: Message, name: str) -> str:
    value = part.get_param(name)
    if isinstance(value, tuple):
        value = value[2]
    return hdr.sanitize(str(value or ""))


def _part_bytes(part: Message, ctype: str, defects: list[str]) -> bytes:
    """The decoded content of a part; an attached message as .eml bytes (decoding a
    base64/quoted-printable message/rfc822, which RFC 2046 forbids but mailers send)."""
    if not part.is_multipart():
        return payload_bytes(part, ctype, defects, sniff_qp=False)
    inner = [p for p in part.get_payload() if isinstance(p, Message)]
    cte = transfer_encoding(part)
    if len(inner) == 1 and cte in ("base64", "quoted-printable") and not inner[0].keys():
        encoded = inner[0].get_payload(decode=True) if not inner[0].is_multipart() else b""
        encoded = encoded if isinstance(encoded, bytes) else b""
        try:
            return binascii.a2b_base64(encoded) if cte == "base64" else binascii.a2b_qp(encoded)
        except (binascii.Error, ValueError):
            return encoded
    return b"\n".join(_entity_bytes(p) for p in inner)


def _entity_bytes(msg: Message) -> bytes:
    buf = io.BytesIO()
    try:
        BytesGenerator(buf, mangle_from_=False, policy=AS_RECEIVED).flatten(msg)
    except (LookupError, UnicodeError, ValueError, TypeError, AttributeError):
        return b""                    # an attached message the generator cannot write
    return buf.getvalue()


def _view_text(part: Message, ctype: str) -> str:
    """What machine detection reads from a non-body part: the fields of report parts
    and the header block of an attached message; decoded text of text/* parts."""
    if part.is_multipart():
        blocks = ["\n".join(f"{k}: {v}" for k, v in p.raw_items())
                  for p in part.get_payload() if isinstance(p, Message)]
        text = "\n\n".join(blocks)
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:VIEW_CHARS]
    if ctype.startswith("text/") or ctype.startswith("message/"):
        data = part.get_payload(decode=True)
        data = data[:VIEW_CHARS * 2] if isinstance(data, bytes) else b""
        return hdr.decode_bytes(data, part.get_content_charset())[:VIEW_CHARS]
    return ""
