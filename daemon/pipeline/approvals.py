"""Change approval (pure): who must approve a change, what a reply decides, when a stage is done.

A ticket of type `change` is approved by stages (daemon.approval_rules loads them from
rules/approvals.yaml): a stage is a list of approvers who must all approve, or a change
advisory board (CAB) with a quorum - any one, all, or N of its M members. `plan_for` picks
the policy of the ticket's service, else of its queue, else the default. `tally` says what
the votes of one stage come to: approved once the quorum is reached, rejected once it can no
longer be (one `reject` in an all-must-approve stage). `read_decision` reads the first
words of an approver's reply: `approve` or `reject` and a comment, or a `Refusal` that
explains what is expected. `state_of` derives what `show` prints: awaiting-approval,
approved, rejected or expired from the stored approval, then implemented (the approved
change was resolved) and closed from the ticket's status.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

APPROVE_WORDS = ("approve", "approved")        # strict: "ok" or "no problem" decide nothing
REJECT_WORDS = ("reject", "rejected")
STATES = ("awaiting-approval", "approved", "rejected", "expired", "implemented", "closed")


@dataclass(frozen=True)
class Approver:
    """One person who approves: the address the request goes to (lower-case) and a name."""

    email: str
    name: str = ""


@dataclass(frozen=True)
class Stage:
    """One approval step: `approvers` and how many approvals it needs (`quorum`, 1..M);
    `kind` is "approvers" (all must approve) or "cab"."""

    kind: str
    approvers: tuple[Approver, ...]
    quorum: int

    @property
    def quorum_text(self) -> str:
        m = len(self.approvers)
        if self.quorum == m:
            return "all" if m > 1 else "1 of 1"
        return "any one" if self.quorum == 1 else f"{self.quorum} of {m}"


@dataclass(frozen=True)
class ApprovalPolicy:
    """The stages a change goes through (one or two), with the reminder and expiry times."""

    name: str
    stages: tuple[Stage, ...]
    remind_after: timedelta
    expire_after: timedelta


@dataclass(frozen=True)
class ApprovalRules:
    """approvals.yaml, loaded: policies by service and by queue, an optional default."""

    by_service: Mapping[str, ApprovalPolicy]
    by_queue: Mapping[str, ApprovalPolicy]
    default: ApprovalPolicy | None = None
    version: str = ""


NO_APPROVALS = ApprovalRules({}, {}, None, "")


@dataclass(frozen=True)
class Vote:
    """One approver's answer so far: pending | approved | rejected | expired."""

    approver: str
    status: str


@dataclass(frozen=True)
class Decision:
    """What an approver's reply says: `approve` or `reject`, with the comment after the word."""

    kind: str
    comment: str


@dataclass(frozen=True)
class Refusal:
    """Why an approver's reply records nothing, in words for the approver."""

    reason: str


def plan_for(rules: ApprovalRules, service: str | None, queue: str) -> tuple[ApprovalPolicy | None, str]:
    """The policy for a change and where it came from ("service email", "queue network", "default")."""
    if service and service in rules.by_service:
        return rules.by_service[service], f"service {service}"
    if queue in rules.by_queue:
        return rules.by_queue[queue], f"queue {queue}"
    if rules.default is not None:
        return rules.default, "default"
    return None, f"no approval policy for service {service or '-'} or queue {queue}"


def tally(stage: Stage, votes: Sequence[Vote]) -> str:
    """approved | rejected | pending for one stage's votes (one per approver)."""
    approved = sum(1 for v in votes if v.status == "approved")
    against = sum(1 for v in votes if v.status in ("rejected", "expired"))
    if approved >= stage.quorum:
        return "approved"
    if len(stage.approvers) - against < stage.quorum:
        return "rejected"
    return "pending"


_FIRST = re.compile(r"^\W*([A-Za-z]+)\b[\s:,.!-]*(.*)$", re.S)


def read_decision(text: str) -> Decision | Refusal:
    """The decision a reply's own text (quoted history already stripped) starts with."""
    lines = [line.strip() for line in (text or "").splitlines()]
    body = "\n".join(lines).strip()
    if not body:
        return Refusal("the reply is empty: start it with 'approve' or 'reject' (and a comment if you like)")
    m = _FIRST.match(body)
    word = m.group(1).lower() if m else ""
    comment = m.group(2).strip() if m else ""
    if word in APPROVE_WORDS:
        return Decision("approve", comment[:2000])
    if word in REJECT_WORDS:
        return Decision("reject", comment[:2000])
    first = body.splitlines()[0][:80]
    return Refusal(f"the reply starts with {first!r}: it must start with the word 'approve' or 'reject' "
                   f"(a comment may follow on the same line or below)")


def expires_at(policy_expire: timedelta, stage_started: datetime) -> datetime:
    return stage_started + policy_expire


def state_of(approval_state: str | None, ticket_status: str) -> str | None:
    """The change's state as users see it (None: not a change under approval)."""
    if approval_state is None:
        return None
    if approval_state == "approved" and ticket_status == "closed":
        return "closed"
    if approval_state == "approved" and ticket_status == "resolved":
        return "implemented"
    if approval_state in ("rejected", "expired") and ticket_status == "closed":
        return "closed"
    return approval_state
