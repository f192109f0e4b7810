"""Rendering mail templates (pure): a loaded `Templates` snapshot, the variables every
template sees, and the rendered result.

The snapshot is read, compiled and validated by the edge module daemon/templates.py
(`load_templates`, `LiveTemplates`); rendering one of its templates reads nothing from
disk, so the planning stages (notify, agent_mail, sla.escalate) call it directly.
Building the MIME bytes lives in daemon.pipeline.compose.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

AUDIENCES = ("requester", "agent", "manager", "approver")
REQUIRED = ("requester/ack", "requester/reopen", "requester/resolve", "agent/new", "agent/message")
NO_MESSAGE_EVENTS = ("resolve", "sla-")   # events no customer message causes: `message` is None
ESCALATION_EVENTS = "sla-"           # <audience>/sla-*: SLA escalation mails, with `escalation`
# The `escalation` variable of sla-* templates (daemon.pipeline.sla.escalate makes the real one).
ESCALATION_SAMPLE = {
    "level": "warn", "percent": "75%", "target": "first_response", "target_label": "first response",
    "goal": "4h00m", "due": "2026-03-02 13:30 UTC", "elapsed": "3h00m", "left": "1h00m", "overdue": "",
    "breached": False, "state": "due in 1h00m of business time", "policy": "standard",
    "policy_description": "Everyday support", "calendar": "office", "priority_before": "P3", "priority": "P3",
    "priority_raised": "", "assignee": "Ben Okafor <ben@example.com>", "reassigned_to": "", "tags_added": "",
    "recipients": "ben@example.com, ana@example.com"}
MAX_TEXT = 20_000                    # characters of customer text put into one mail
LANG_DIR = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class Rendered:
    """One rendered mail body: subject (one line), text, optional HTML, which template."""

    subject: str
    text: str
    html: str | None
    template: str
    lang: str | None


class Templates:
    """A validated, immutable snapshot of the templates directory."""

    def __init__(self, root: Path, env: jinja2.Environment, names: frozenset[str], version: str):
        self.root, self.env, self.names, self.version = root, env, names, version
        self.languages = frozenset(n.split("/")[0] for n in names if LANG_DIR.match(n.split("/")[0]))

    def find(self, audience: str, event: str, *, queue: str | None = None, lang: str | None = None) -> str | None:
        """The template name to use: queue+language, language, queue, default; None if absent."""
        lang = lang if lang in self.languages else None
        tail = f"{audience}/{event}"
        for cand in (f"queues/{queue}/{lang}/{tail}" if queue and lang else None,
                     f"{lang}/{tail}" if lang else None,
                     f"queues/{queue}/{tail}" if queue else None, tail):
            if cand and cand in self.names:
                return cand
        return None

    def render(self, name: str, context: Mapping[str, Any], default_subject: str) -> Rendered:
        """Render template `name` (text, and HTML when there is one)."""
        text = self.env.get_template(name + ".txt.j2").render(context)
        html = None
        if name + ".html.j2" in self.env.loader.sources:          # type: ignore[union-attr]
            html = self.env.get_template(name + ".html.j2").render(context)
        subject, body = split_subject(text)
        parts = name.split("/")
        lang = parts[-3] if len(parts) >= 3 and LANG_DIR.match(parts[-3]) else None
        return Rendered(subject or default_subject, body, html, name, lang)


def quote(text: Any) -> str:
    """The `quote` filter: every line prefixed with "> ", as mail clients quote."""
    return "\n".join("> " + line if line else ">" for line in str(text).splitlines())


def split_subject(text: str) -> tuple[str | None, str]:
    """(subject, body) of a rendered text template: a leading `Subject:` line is the subject."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\n")
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        return first[8:].strip(), rest.lstrip("\n").rstrip() + "\n"
    return None, text.rstrip() + "\n"


# ---------------------------------------------------------------------- contexts
def build_context(*, desk: Mapping[str, str], ticket: Mapping[str, Any], requester: Mapping[str, str],
                  message: Mapping[str, Any] | None, queue: Mapping[str, str], lang: str,
                  reply_to: str, agent: Mapping[str, str] | None = None,
                  sla: Mapping[str, str] | None = None,
                  escalation: Mapping[str, Any] | None = None,
                  known_error: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The variables every template sees (`agent` only in agent templates, `escalation`
    only in sla-* templates). `sla` is None when the ticket has no SLA targets (or they
    are paused); `message` is None for events no message caused; `known_error` is the
    workaround of the problem a new incident is linked to (None when there is none)."""
    ctx: dict[str, Any] = {"desk": dict(desk), "ticket": dict(ticket), "requester": dict(requester),
                           "message": dict(message) if message is not None else None,
                           "queue": dict(queue), "lang": lang, "reply_to": reply_to, "sla": sla,
                           "known_error": dict(known_error) if known_error is not None else None}
    if agent is not None:
        ctx["agent"] = dict(agent)
    if escalation is not None:
        ctx["escalation"] = dict(escalation)
    return ctx


def message_vars(subject: str, text: str, from_name: str, from_email: str, received: str) -> dict[str, Any]:
    cut = len(text) > MAX_TEXT
    return {"subject": subject, "text": text[:MAX_TEXT] + ("\n[...]" if cut else ""), "truncated": cut,
            "from_name": from_name, "from_email": from_email, "from_display": from_name or from_email,
            "received": received}
