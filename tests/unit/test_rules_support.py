"""Helpers for the rules tests: ParsedMessage builders and a minimal rules directory."""
from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

from daemon.model import Address, AttachmentPart, MachineVerdict, ParsedMessage, ThreadDecision

NEW = ThreadDecision("new", None, "test")
REPLY = ThreadDecision("append", 7, "test")
# Monday 2 March 2026, 10:00 UTC = 10:00 in Europe/London (GMT): business hours.
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)

QUEUES = """
roles: [lead, agent]
queues:
  general:
    agents:
      - {email: ana@example.com, role: lead}
      - {email: ben@example.com}
  network:
    agents:
      - {email: chen@example.com, role: lead}
  workplace:
    agents:
      - {email: ben@example.com}
"""
VOCABULARY = """
types: [incident, request, change]
tags: [vip, outage, hardware, german, after-hours, screenshot, newsletter]
"""
PRIORITY = """
levels: [P1, P2, P3, P4]
impact_levels: [high, medium, low]
urgency_levels: [high, medium, low]
matrix:
  high:   {high: P1, medium: P2, low: P3}
  medium: {high: P2, medium: P3, low: P3}
  low:    {high: P3, medium: P4, low: P4}
default_impact: low
default_urgency: medium
"""
SERVICES = """
services:
  erp: {queue: general, impact: high, sla: critical}
  vpn: {queue: network, impact: medium}
"""
ROUTING = """
calendar:
  timezone: Europe/London
  days: [mon, tue, wed, thu, fri]
  hours: {from: "08:00", to: "18:00"}
  holidays: [2026-12-25]
default:
  type: incident
  queue: general
  priority: P3
rules:
  - name: outage
    when: {subject: outage}
    then: {queue: network, impact: high, urgency: high, tags: [outage]}
"""


def write_rules(root: Path, *, routing: str = ROUTING, queues: str = QUEUES, vocabulary: str = VOCABULARY,
                priority: str = PRIORITY, services: str | None = SERVICES) -> Path:
    """A rules directory under `root` (created), each file given as YAML text."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("queues.yaml", queues), ("vocabulary.yaml", vocabulary), ("priority.yaml", priority),
                       ("services.yaml", services), ("routing.yaml", routing)):
        path = root / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def rules_yaml(rules: str, *, head: str | None = None) -> str:
    """routing.yaml text: the standard calendar/default head plus `rules:` written here."""
    head = head if head is not None else ROUTING.split("rules:")[0]
    return textwrap.dedent(head) + "rules:\n" + textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ") + "\n"


def msg(*, subject: str = "Hello", text: str = "Some text.", html: str | None = None,
        sender: str | None = "user@example.com", to: tuple[str, ...] = ("support@example.com",),
        cc: tuple[str, ...] = (), headers: tuple[tuple[str, str], ...] = (), machine: str = "human",
        attachments: tuple[AttachmentPart, ...] = (), language: str | None = None,
        suppress_auto_reply: bool = False) -> ParsedMessage:
    """A ParsedMessage built directly (all fields are plain values)."""
    return ParsedMessage(
        message_id="m1@example.com", message_id_synthetic=False, content_digest="d" * 64, subject=subject,
        from_addr=Address("", sender) if sender else None, reply_to=(),
        to=tuple(Address("", a) for a in to), cc=tuple(Address("", a) for a in cc),
        date=None, in_reply_to=(), references=(), text=text, html=html, attachments=attachments,
        headers=(("From", sender or ""), ("Subject", subject)) + headers,
        machine=MachineVerdict(machine, suppress_auto_reply=suppress_auto_reply), language=language)


def attachment(filename: str, content_type: str, *, inline: bool = False) -> AttachmentPart:
    return AttachmentPart(filename=filename, content_type=content_type, data=b"x", size=1, inline=inline)
