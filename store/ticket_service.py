"""A ticket's service (store): the services.yaml entry a rule mapped its first mail to.

The SLA plan keeps it (`ticketsla.service`) when there is an sla.yaml; the `created` event
keeps it always (`routing.service`), so the report's volume by service and the approval
policy per service work without SLA rules too.
"""
from __future__ import annotations

import json

from sqlmodel import Session, select

from store import tables as m


def created_service(detail: str) -> str | None:
    """The service named by a `created` event's JSON detail (`routing.service`), or None."""
    try:
        service = json.loads(detail).get("routing", {}).get("service")
    except (ValueError, AttributeError):
        return None
    return service if isinstance(service, str) and service else None


def service_of(s: Session, ticket_id: int) -> str | None:
    """A ticket's service: its SLA plan's, else its `created` event's."""
    row = s.get(m.TicketSla, ticket_id)
    if row is not None and row.service:
        return row.service
    detail = s.exec(select(m.Event.detail).where(m.Event.ticket_id == ticket_id, m.Event.kind == "created")
                    .order_by(m.Event.id).limit(1)).first()
    return created_service(detail) if detail else None
