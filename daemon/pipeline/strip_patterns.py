"""Multilingual line patterns for the reply-stripping stage (daemon.pipeline.strip).

Each predicate looks at ONE line, or at a few wrapped header lines joined together, and
never at more than MAX_SCAN characters.  No two neighbouring quantifiers can match the
same characters (leading runs are possessive, `*+`, Python 3.11+), and costly searches
are cut to the end of the line or guarded by a cheap substring test, so a line costs tens
of microseconds at most, whatever the mail holds.  To support another language, extend
the word lists; the corpus tests in tests/unit/test_strip.py show what a change wins or
breaks.
"""
from __future__ import annotations

import re

MAX_SCAN = 400  # a line longer than this is body text: never a header, tagline or closing


def _alt(words: str) -> str:
    """'a|b c|d' -> regex alternation, longest first, with spaces matching any whitespace."""
    items = sorted({w.strip() for w in words.split("|") if w.strip()}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in items)


# --- quotes, fences, delimiters -------------------------------------------------------
# "> text", ">> text", "> > text", and the old "Name> text" style ("C>", "Richard>").
QUOTE_PREFIX = re.compile(r"[ \t]*(?:[A-Za-z]{1,10}>(?=[ \t>]|$)|>)(?:[ \t]*>)*[ \t]?")
QP_ESCAPE = re.compile(r"=(?:[A-F0-9]{2})")  # "=E2=80=AF": a body left quoted-printable
FENCE = re.compile(r"[ \t]*(?:```|~~~)")
# A line made only of rule characters ("--", "-- ", "____", "====", "***", "ᐧ", "—").
DELIMITER = re.compile(r"\s*(?:[-_=+~#*,—–]{2,}|[ᐧ—–])\s*")

# --- attribution lines: "On <date>, <name> wrote:" in many languages -------------------
_LATIN_VERBS = _alt(
    "wrote|writes|schrieb|schrieben Sie|hat geschrieben|geschrieben|a écrit|nous a dit|"
    "escribió|escreveu|ha scritto|scrisse|het volgende geschreven|schreef|geschreven|"
    "skrev følgende|skrev|napisał(a)|napisała|napisał|napsal|kirjoitti|írta|"
    "написал(а)|написала|написал|пишет|пише|написав|писал|pisze|píše|napsala|napsal(a)|"
    "έγραψε|yazdı|a scris|va escriure|escrigué")
_CJK_VERBS = "写道|寫道|書きました|のメッセージ|のメール|님이 작성"
_VERB_STEMS = ("wrote", "writes", "schrieb", "geschrieben", "écrit", "a dit", "escribi",
               "escreveu", "scritto", "scrisse", "schreef", "skrev", "napisa", "napsal",
               "kirjoitti", "írta", "написа", "пише", "писал", "pisze", "píše", "έγραψε", "yazdı",
               "a scris", "escriure", "escrigué", "写道", "寫道", "書きました", "のメッセージ",
               "のメール", "작성")
_VERB = rf"(?:(?<![^\W\d_])(?:{_LATIN_VERBS})|{_CJK_VERBS})"
HAS_VERB = re.compile(_VERB, re.IGNORECASE)
ENDS_VERB = re.compile(_VERB + r"[\s:：.\-–—>*)]*$", re.IGNORECASE)
ENDS_COLON = re.compile(r"[:：]\s*$")
# Words that open an attribution (case-sensitive on purpose: "On", not "on").
LEAD = re.compile(r"[\s>*\-–—]*+(?:On|Am|Le|El|Em|Il|Op|Den|Dne|Dnia|Dňa|W\s+dniu|At|"
                  r"In\s+message|Στις|Pe|在)(?:\s|$)")
LEAD_VERB_INSIDE = re.compile(r"[\s>*]*+(?:Am|Den|Op)\s")  # "Am <date> schrieb <name>:"
DATE_START = re.compile(r"[\s>*]*+(?:\d|[^\W\d_]{2,12}\.?,?\s+\d)")  # "2016-..", "Thu, 26"
DATEISH = re.compile(r"\d{1,2}:\d{2}|\d{4}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")  # starts once per word
EMAIL_END = re.compile(r"@[\w-]+(?:\.[\w-]+)+>*\)?\s*[:：]?\s*$")
GMAIL_ISO = re.compile(r"\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT[+-]\d{1,2}:?\d{2}\s+\S")
POSTED_BY = re.compile(r"Posted by .{1,80} on \d{1,2}/\d{1,2}/\d{2,4}\s*$")

# --- "-----Original Message-----", "Begin forwarded message:" -------------------------
_FORWARD_WORDS = _alt(
    "Original Message|Forwarded message|Forwarded Message|Reply Message|"
    "Begin forwarded message|Ursprüngliche Nachricht|Originalnachricht|"
    "Weitergeleitete Nachricht|Anfang der weitergeleiteten Nachricht|"
    "Message d'origine|Message original|Message transféré|Début du message transféré|"
    "Mensaje original|Mensaje reenviado|Inicio del mensaje reenviado|Mensagem original|"
    "Mensagem encaminhada|Messaggio originale|Messaggio inoltrato|Inizio messaggio inoltrato|"
    "Oorspronkelijk bericht|Origineel bericht|Doorgestuurd bericht|Oprindelig meddelelse|"
    "Videresendt meddelelse|Opprinnelig melding|Videresendt melding|Ursprungligt meddelande|"
    "Vidarebefordrat meddelande|Oryginalna wiadomość|Wiadomość oryginalna|"
    "Välitetty viesti|Přeposlaná zpráva|Videresendt besked|Videresendt e-mail|"
    "転送メッセージ|转发邮件|轉寄郵件|Doorgestuurde e-mail|Weitergeleitete E-Mail|"
    "Przekazana wiadomość|Исходное сообщение|Пересылаемое сообщение|Пересланное сообщение|"
    "Оригінальне повідомлення|Původní zpráva|Alkuperäinen viesti|Eredeti üzenet|"
    "原始邮件|原始郵件|转发的邮件|転送されたメッセージ|元のメッセージ")
FORWARD = re.compile(rf"[\s>]*+\*?(?:[-=_]{{2,}}\s*)?(?:{_FORWARD_WORDS})\s*(?:[-=_]{{2,}})?"
                     r"\s*\**\s*[:：]?\s*$", re.IGNORECASE)  # no class overlaps its neighbour

# --- Outlook-style header blocks: "From: ...", "Sent: ...", "To: ...", "Subject: ..." ---
_FIELDS = {
    "from": "From|Von|De|Da|Van|Fra|Från|Od|От|Від|Lähettäjä|Feladó|Expéditeur|Odesílatel|"
            "Remitente|Kimden|发件人|寄件者|差出人",
    "date": "Sent|Date|Datum|Dato|Gesendet|Envoyé|Enviado|Enviada|Enviada em|Fecha|Data|"
            "Inviato|Verzonden|Verstuurd|Sendt|Skickat|Wysłano|Wysłane|Отправлено|Дата|"
            "Надіслано|Lähetetty|Elküldve|Tarih|Odesláno|Datum odeslání|Wysłany|"
            "发送时间|日期|傳送時間|送信日時|日時",
    "to": "To|An|À|A|Para|Aan|Til|Till|Do|Komu|Кому|Vastaanottaja|Címzett|Kime|"
          "Destinataire|Reply-To|Répondre à|Risposta|Antwort an|Beantwoorden - Aan|"
          "收件人|收件者|宛先",
    "cc": "Cc|Bcc|Kopie|Kopia|Kopi|DW|UDW|Копия|Копія|抄送|副本",
    "subject": "Subject|Betreff|Objet|Asunto|Assunto|Oggetto|Onderwerp|Emne|Ämne|Temat|Předmět|"
               "Тема|Aihe|Tárgy|Konu|主题|主旨|件名",
}
_FIELD_KIND = {w.lower(): k for k, ws in _FIELDS.items() for w in ws.split("|")}
FIELD = re.compile(r"[*_]{0,2}(" + _alt("|".join(_FIELDS.values()))
                   + r")[*_]{0,2}\s?[*_]{0,2}[:：]", re.IGNORECASE)

# --- mobile taglines: "Sent from my iPhone", "Von meinem iPhone gesendet" --------------
TAGLINE = re.compile(r"""[\s(<\[*]*+(?:
      sent\s+(?:from|via|with|by|using)\s | [^\W\d_]+\s+from\s+mobile\b
    | from\s+my\s | envoyé\s+(?:depuis|de|avec)\s | von\s+meine[mr]?\s | gesendet\s+(?:von|mit)\s
    | diese\s+nachricht\s+wurde\s+von\s | inviato\s+da | sendt\s+fra\s | enviado\s+(?:do|desde|de)\s
    | verzonden\s+(?:met|vanaf|van)\s | verstuurd\s+(?:met|vanaf|van)\s | skickat\s+från\s
    | från\s+min\s | wysłane\s+z\s | wysłano\s+z\s | отправлено\s+(?:с|из)\s | lähetetty\s
    | odesláno\s+z\s | odoslané\s+z\s | 從我的 | 发自我的 | 从我的 | \S{1,20}から送信
    | (?:get|obtenir|obtener|scarica|baixe\s+o|obter\s+o|hanki|skaffa|få|získat|получить)\s+outlook\s
    | outlook\s+(?:für|voor)\s | pobierz\s+(?:aplikację\s+)?outlook)""",
                     re.IGNORECASE | re.VERBOSE)
_SUFFIX_TAGLINES = ("gönderildi", "adresinden gönderildi")
DEVICE = re.compile(
    r"\b(?:iphone|ipad|ipod|android|blackberry|mobil|phone|smartphone|cell|galaxy|samsung|htc|"
    r"nokia|pixel|huawei|xiaomi|alcatel|motorola|lumia|windows|outlook|mail|device|tablet|"
    r"handy|k-9|airmail|sparrow|móvil|celular|telefo|smartfon|portable|ios\b|watch)")  # lower
_LINK_NOISE = re.compile(r"\[([^\]\n]{0,200})\]\([^)\n]{0,300}\)|<(?:https?:|mailto:)[^>\s]{0,300}>"
                         r"|\(https?://[^)\s]{0,300}\)|https?://\S{0,300}")

# --- closings: "Regards,\nAnna", "Mvh\nPeter", "-Abhishek Kona", "/John" -----------------
_VALEDICTIONS = _alt(
    "regards|best regards|kind regards|warm regards|warmest regards|best wishes|cheers|"
    "thanks|thank you|thanks again|many thanks|thanks a lot|thanks and regards|"
    "thanks & regards|thx|sincerely|yours sincerely|yours truly|yours faithfully|yours|best|"
    "all the best|br|rgds|cordially|respectfully|take care|"
    "gruß|gruss|grüße|gruesse|viele grüße|beste grüße|liebe grüße|herzliche grüße|"
    "freundliche grüße|mit freundlichen grüßen|mit besten grüßen|mit freundlichem gruß|"
    "mfg|lg|vg|danke|vielen dank|cordialement|bien cordialement|bien à vous|amicalement|"
    "salutations|merci|merci beaucoup|bonne journée|saludos|saludos cordiales|un saludo|"
    "atentamente|gracias|muchas gracias|abraços|atenciosamente|cumprimentos|obrigado|"
    "obrigada|cordiali saluti|distinti saluti|saluti|un saluto|grazie|"
    "met vriendelijke groet|met vriendelijke groeten|vriendelijke groet|groeten|groet|mvg|"
    "hartelijke groet|bedankt|med venlig hilsen|venlig hilsen|med vennlig hilsen|"
    "vennlig hilsen|med vänlig hälsning|vänliga hälsningar|vänlig hälsning|hälsningar|"
    "hälsning|mvh|hilsen|hilsner|kh|kærlig hilsen|tak|tack|pozdrawiam|pozdrawiam serdecznie|"
    "z poważaniem|z powazaniem|pozdrowienia|dziękuję|с уважением|спасибо|всего доброго")
VALEDICTION = re.compile(rf"\s*(?:{_VALEDICTIONS})\s*[,.!:;]*\s*$", re.IGNORECASE)
SIGNOFF = re.compile(r"\s*(?:-(?=[^\W\d_])|(?:--|//?|[—–])\s?)[^\W\d_][^,;:!?]{0,40}$")


def may_be_header(line: str) -> bool:
    """Cheap pre-check: can a header (or a wrapped attribution) start on this line?"""
    return bool(line) and (":" in line or "：" in line or "@" in line or "<" in line
                           or "--" in line or "__" in line or line.startswith("Posted by"))


def is_delimiter(line: str) -> bool:
    """True for a rule line ("-- ", "____", "====", "ᐧ") that opens a signature/footer."""
    return DELIMITER.fullmatch(line) is not None


def field_kind(line: str) -> str | None:
    """'from', 'date', 'to', 'cc' or 'subject' for an Outlook-style header field line."""
    m = FIELD.match(line.lstrip())
    return _FIELD_KIND.get(re.sub(r"\s+", " ", m.group(1)).lower()) if m else None


def is_forward_marker(line: str) -> bool:
    """True for "-----Original Message-----", "Begin forwarded message:" and the like."""
    return len(line) <= 120 and FORWARD.match(line) is not None


def starts_with_lead(line: str) -> bool:
    """True when the line opens like an attribution ("On ...", "Am ...", "Le ...")."""
    return LEAD.match(line) is not None


def could_start_attribution(line: str) -> bool:
    """True when a wrapped attribution may start on this line (worth joining the next ones)."""
    return bool(LEAD.match(line) or DATE_START.match(line) or "@" in line
                or line.endswith("<"))


def _mentions_verb(text: str) -> bool:
    low = text.lower()
    return any(stem in low for stem in _VERB_STEMS)  # cheap test before the verb regexes


def is_attribution(text: str) -> bool:
    """True for an attribution line ("On ... wrote:", "Am ... schrieb X:", "<date> <email>:")."""
    if len(text) < 6 or len(text) > MAX_SCAN:
        return False
    has_at, tail = "@" in text, max(0, len(text) - 60)
    if _mentions_verb(text[tail:]) and ENDS_VERB.search(text, tail):
        if LEAD.match(text) or DATE_START.match(text) or has_at or " via " in text:
            return True
    if ENDS_COLON.search(text) and _mentions_verb(text) and HAS_VERB.search(text):
        if has_at and EMAIL.search(text):
            return True
        if LEAD_VERB_INSIDE.match(text) and any(ch.isdigit() for ch in text):
            return True
    if (has_at and DATE_START.match(text) and DATEISH.search(text)
            and EMAIL_END.search(text, max(0, len(text) - 120))):
        return True
    return bool(GMAIL_ISO.match(text) or POSTED_BY.match(text))


def is_open_attribution(text: str) -> bool:
    """True when an attribution may go on on the next line ("... <", "... <a@b.c>")."""
    return text.endswith("<") or bool(EMAIL_END.search(text, max(0, len(text) - 120))
                                      and not ENDS_COLON.search(text))


def clean_tagline(line: str) -> str:
    """The line with markdown links, <urls> and bare URLs reduced to their text."""
    return _LINK_NOISE.sub(lambda m: m.group(1) or "", line).strip()


def is_tagline(line: str) -> bool:
    """True for a mobile/app tagline; "Sent from my desk, is much easier..." is not one."""
    if len(line) > 200:
        return False
    text = clean_tagline(line) if ("[" in line or "http" in line) else line.strip()
    if text.endswith(_SUFFIX_TAGLINES):             # "iPhone'umdan gönderildi"
        return len(text.split()) <= 4
    if not TAGLINE.match(text):
        return False
    if len(text.split()) <= 4:
        return True
    clause = re.split(r"[,.;!?](?:\s|$)", text, maxsplit=1)[0][:80]
    return DEVICE.search(clause.lower()) is not None


def is_closing_start(line: str, last: bool) -> bool:
    """True for a valediction line ("Regards,", "Mvh") or, as the last line, "-Name"."""
    text = line.strip()
    if len(text) > 60:
        return False
    return bool(VALEDICTION.match(text) or (last and SIGNOFF.match(text)))
