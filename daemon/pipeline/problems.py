"""Problem management (pure): what resolving a problem does to its incidents, and the
known error an incident's acknowledgement carries.

`plan_resolution` takes the problem's linked incidents and the requesters already told,
and returns the incidents to resolve (those still open, when the problem's queue says
`resolve_linked_incidents`) and the notices to send: one per requester (on their oldest
linked incident), never to a requester told before, nor to our own addresses. The
notices are `requester/problem-resolved`; the incidents resolved this way get no separate
resolve notice (the problem's notice says it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

OPEN = frozenset({"new", "open", "pending"})


@dataclass(frozen=True)
class Incident:
    """A linked incident as planning sees it."""

    id: int
    status: str
    requester: str


@dataclass(frozen=True)
class Resolution:
    """What resolving a problem does: incidents to resolve, and (incident id, requester) notices."""

    resolve: tuple[int, ...] = ()
    notify: tuple[tuple[int, str], ...] = ()
    skipped: tuple[str, ...] = ()


def plan_resolution(incidents: Sequence[Incident], told: frozenset[str], own: frozenset[str],
                    resolve_open: bool) -> Resolution:
    """See module docstring."""
    resolve = tuple(i.id for i in incidents if resolve_open and i.status in OPEN)
    notify: dict[str, int] = {}
    skipped: list[str] = []
    for i in incidents:
        email = (i.requester or "").lower()
        if not email or "@" not in email or email in own:
            skipped.append(f"incident {i.id}: no usable requester address {email!r}")
        elif email in told:
            skipped.append(f"{email} was told before")
        else:
            notify.setdefault(email, i.id)
    return Resolution(resolve, tuple((tid, email) for email, tid in notify.items()), tuple(dict.fromkeys(skipped)))


def known_error_vars(ref: str, subject: str, workaround: str) -> dict[str, Any] | None:
    """The `known_error` template variable of an acknowledgement; None without a workaround."""
    if not workaround.strip():
        return None
    return {"ref": ref, "subject": subject, "workaround": workaround.strip()}


def problem_vars(ref: str, subject: str, workaround: str, incident_ref: str) -> dict[str, Any]:
    """The `problem` template variable of requester/problem-resolved."""
    return {"ref": ref, "subject": subject, "workaround": workaround, "incident": incident_ref}


SAMPLE = {"problem": {"ref": "HD-7", "subject": "VPN drops every hour", "workaround": "Reconnect the VPN client.",
                      "incident": "HD-42"}}
KNOWN_ERROR_SAMPLE = {"ref": "HD-7", "subject": "VPN drops every hour",
                      "workaround": "Reconnect the VPN client."}
