"""Charset aliases and repairs for the parse stage: bytes of any declared charset -> text.

Pure helpers used by `addresses` (headers) and `parse` (bodies). Mail declares charsets
by labels that Python spells differently or that stand for a vendor superset (GB2312
mail is written in GBK/GB18030, Shift_JIS in Microsoft's CP932, ISO-8859-1 in
Windows-1252, ISO-2022-JP in CP50220 with NEC and IBM extensions), so every label goes
through one alias table first. When the declared charset still fails, the repair layer
tries what senders really meant (ISO-2022-JP through CP932, EUC-JP through
EUC-JIS-2004) before the general fallback: utf-8 -> utf-8 with a few bad sequences
replaced -> a legacy guess -> latin-1. Nothing here raises on bad input.
"""
from __future__ import annotations

import codecs
import re

# Labels that mail uses for a superset, or that Python spells differently (lower case).
_ALIASES = {
    # Chinese: GB2312 mail is GBK in practice, and GB18030 is a superset of both
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "cp936": "gb18030", "ms936": "gb18030", "windows-936": "gb18030", "csgb2312": "gb18030",
    "gb_2312-80": "gb18030", "gb_2312": "gb18030", "chinese": "gb18030", "x-euc-cn": "gb18030",
    "hz-gb-2312": "hz", "big5": "cp950", "x-big5": "cp950", "cn-big5": "cp950",
    "csbig5": "cp950", "big5-hkscs": "big5hkscs", "x-x-big5": "cp950",
    # Japanese: Shift_JIS is CP932 (Windows-31J); ISO-2022-JP variants of the same family
    "shift_jis": "cp932", "sjis": "cp932", "shift-jis": "cp932", "x-sjis": "cp932",
    "ms_kanji": "cp932", "csshiftjis": "cp932", "windows-31j": "cp932", "x-ms-cp932": "cp932",
    "shift_jisx0213": "shift_jisx0213", "iso-2022-jp-ms": "iso2022_jp",
    "cp50220": "iso2022_jp", "cp50221": "iso2022_jp", "cp50222": "iso2022_jp",
    "x-windows-iso2022jp": "iso2022_jp", "iso-2022-jp-1": "iso2022_jp_1",
    "iso-2022-jp-2": "iso2022_jp_2", "iso-2022-jp-3": "iso2022_jp_3",
    "eucjp-ms": "euc_jp", "eucjp-win": "euc_jp", "cp51932": "euc_jp", "x-euc-jp": "euc_jp",
    "euc-jisx0213": "euc_jisx0213",
    # Korean, Thai, Hebrew, Western
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "ks_c_5601": "cp949", "ksc5601": "cp949",
    "korean": "cp949", "windows-949": "cp949", "x-windows-949": "cp949", "uhc": "cp949",
    "windows-874": "cp874", "tis-620": "cp874", "iso-8859-11": "cp874", "x-windows-874": "cp874",
    "iso-8859-8-i": "iso-8859-8", "iso-8859-8-e": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6", "visual": "iso-8859-8",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252", "l1": "cp1252", "us-ascii": "ascii", "ascii": "ascii",
    "ansi_x3.4-1968": "ascii", "x-mac-roman": "mac_roman", "x-mac-ce": "mac_latin2",
    "x-mac-cyrillic": "mac_cyrillic", "x-user-defined": "cp1252", "windows-1252": "cp1252",
    "iso-8859-9": "cp1254", "latin5": "cp1254",
    # Unicode
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-utf-8": "utf-8", "utf-8n": "utf-8",
    "unicode-1-1-utf-7": "utf-7", "x-unicode20utf8": "utf-8", "ucs-2": "utf-16",
    "iso-10646-ucs-2": "utf-16-be", "unicode": "utf-16", "unicodefffe": "utf-16-be",
    "csunicode": "utf-16", "ucs-4": "utf-32", "iso-10646-ucs-4": "utf-32-be",
}
# Codecs Python accepts for bytes.decode() that are not charsets at all.
_NOT_CHARSETS = {"unicode_escape", "raw_unicode_escape", "undefined", "idna", "punycode",
                 "unicode_internal", "palmos", "mbcs", "oem", "base64", "hex", "zlib", "bz2",
                 "uu", "quopri", "rot_13", "raw_unicode_escape", "unicode_escape"}
# A broken label ("utf-8;", "'iso-8859-1'", "us-ascii format=flowed"): its first word.
_LABEL = re.compile(r"[\w.:+-]{1,40}")
_SINGLE_BYTE = ("ascii", "cp1", "cp4", "cp8", "iso8859", "latin", "koi8", "mac-")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_RUN = re.compile(rb"[\xc0-\xff]{3,}")
_ASCII = bytes(range(128))
_RU_FREQUENT = "оеаинтсрвлОЕАИНТСРВЛ"
_JIS_ESCAPE = re.compile(rb"\x1b(?:\$[@B]|\$\(D|\([BJI]|&@)")
# What the repair layer tries when the declared codec fails, before the general fallback.
_REPAIRS = {"iso2022_jp": "jis-ms", "iso2022_jp_1": "jis-ms", "iso2022_jp_2": "jis-ms",
            "iso2022_jp_3": "jis-ms", "iso2022_jp_ext": "jis-ms", "euc_jp": "euc_jis_2004",
            "shift_jis": "cp932", "cp932": "shift_jisx0213", "gb2312": "gb18030",
            "gbk": "gb18030", "big5": "big5hkscs", "cp950": "big5hkscs", "ascii": "utf-8"}


def codec_for(charset: str | None) -> str | None:
    """The Python codec name for a MIME charset label, or None if unknown/unsafe."""
    if not charset:
        return None
    m = _LABEL.search(charset.lower().split("*", 1)[0])
    if m is None:
        return None
    label = m.group(0)
    try:
        name = codecs.lookup(_ALIASES.get(label, label)).name
    except (LookupError, ValueError, TypeError):
        return None
    return None if name.replace("-", "_") in _NOT_CHARSETS else name


def _try_decode(data: bytes, codec: str | None) -> str | None:
    if codec is None:
        return None
    if codec == "jis-ms":
        return decode_jis_ms(data)
    try:
        text = data.decode(codec)
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None
    if codec not in ("utf-8", "ascii", "cp1252", "latin-1") and _SURROGATE.search(text):
        return None
    return text


def guess_legacy(data: bytes) -> str:
    """Best guess for 8-bit text with no usable charset: when the high bytes form whole
    words (Cyrillic) KOI8-R or cp1251, whichever yields more of the commonest Russian
    letters; otherwise windows-1252."""
    sample = data[:65536]
    high = sample.translate(None, _ASCII)
    if not high or sum(map(len, _HIGH_RUN.findall(sample))) * 10 < len(high) * 6:
        return "cp1252"
    high = high[:4096]
    koi = sum(map(high.decode("koi8_r").count, _RU_FREQUENT))
    cp = sum(map(high.decode("cp1251", "replace").count, _RU_FREQUENT))
    return "koi8_r" if koi > cp else "cp1251"


def decode_text(data: bytes, declared: str | None = None, *,
                utf8_first: bool = False) -> tuple[str, str]:
    """Decode text bytes, never raising, and name the codec used: declared charset ->
    its repair -> utf-8 -> utf-8 with a few bad sequences replaced -> legacy guess ->
    latin-1. Valid multi-byte UTF-8 beats a declared single-byte charset (which cannot
    fail, so could not reveal the lie); `utf8_first` (raw 8-bit headers, RFC 6532) tries
    utf-8 before the declared charset. 7-bit text with ISO-2022-JP escapes and no (or an
    ASCII) charset is read as ISO-2022-JP."""
    codec = codec_for(declared)
    if codec in (None, "ascii") and b"\x1b" in data and _JIS_ESCAPE.search(data):
        codec = "iso2022_jp"
    if utf8_first or (codec and codec.startswith(_SINGLE_BYTE) and not data.isascii()):
        order: tuple[str | None, ...] = ("utf-8", codec)
    else:
        order = (codec, _REPAIRS.get(codec or ""), "utf-8")
    for name in order:
        text = _try_decode(data, name)
        if text is not None:
            return text, str(name)
    text = data.decode("utf-8", "replace")
    if text.count("\ufffd") * 20 <= len(data.translate(None, _ASCII)):   # <= 5% of 8-bit
        return text, "utf-8 (repaired)"
    guess = guess_legacy(data)
    text = _try_decode(data, guess)
    return (text, guess) if text is not None else (data.decode("latin-1"), "latin-1")


def decode_bytes(data: bytes, declared: str | None = None, *, utf8_first: bool = False) -> str:
    """`decode_text` without the codec name."""
    return decode_text(data, declared, utf8_first=utf8_first)[0]


# -- ISO-2022-JP as Microsoft writes it (CP50220/CP50221/CP50222) ------------------------

def decode_jis_ms(data: bytes) -> str | None:
    """ISO-2022-JP with the Microsoft extensions (NEC row 13: circled digits, roman
    numerals; IBM rows 89-92; half-width katakana by ESC ( I or SO/SI), which Python's
    iso2022_jp refuses: each JIS X 0208 pair is moved to Shift_JIS and read as CP932.
    JIS X 0212 runs (ESC $ ( D) are read by iso2022_jp_2. None if it is not ISO-2022-JP."""
    if b"\x1b" not in data and b"\x0e" not in data:
        return None
    out, pos, mode, shifted = bytearray(), 0, "ascii", False
    pieces: list[str] = []
    n = len(data)
    while pos < n:
        byte = data[pos]
        if byte == 0x1B:
            m = _JIS_ESCAPE.match(data, pos)
            if m is None:
                return None
            seq = m.group(0)
            if seq == b"\x1b$(D":
                end = data.find(b"\x1b", pos + 4)
                end = n if end < 0 else end
                pieces += [out.decode("cp932", "replace")]
                out = bytearray()
                pieces.append(data[pos:end].decode("iso2022_jp_2", "replace") if
                              end > pos else "")
                pos, mode = end, "ascii"
                continue
            mode = {b"\x1b(I": "kana", b"\x1b$@": "jis", b"\x1b$B": "jis"}.get(seq, "ascii")
            pos += len(seq)
            continue
        if byte in (0x0E, 0x0F):
            shifted = byte == 0x0E
            pos += 1
            continue
        if mode == "jis" and not shifted and 0x21 <= byte <= 0x7E and pos + 1 < n:
            out += _jis_to_sjis(byte, data[pos + 1])
            pos += 2
            continue
        if (mode == "kana" or shifted) and 0x21 <= byte <= 0x5F:
            out.append(byte + 0x80)
        elif byte < 0x80:
            out.append(byte)
        else:
            return None                        # 8-bit bytes: not ISO-2022-JP
        pos += 1
    pieces.append(out.decode("cp932", "replace"))
    return "".join(pieces)


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    if not 0x21 <= j2 <= 0x7E:
        return bytes((j1, j2))
    s1 = ((j1 - 0x21) >> 1) + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    if j1 & 1:
        s2 = j2 + 0x1F + (1 if j2 >= 0x60 else 0)
    else:
        s2 = j2 + 0x7E
    return bytes((s1, s2))


def has_surrogates(text: str) -> bool:
    """True when `text` holds surrogate escapes (raw 8-bit bytes read as ASCII)."""
    return _SURROGATE.search(text) is not None
