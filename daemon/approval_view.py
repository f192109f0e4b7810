"""`show`'s approvals: a change's approval as JSON (`approvals` in `show --json`) and as text lines."""
from __future__ import annotations

from typing import Any

from daemon.pipeline.approvals import state_of
from store.approvals_store import ApprovalRow


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None


def approvals_json(row: ApprovalRow | None, ticket_status: str) -> dict[str, Any] | None:
    """{state, outcome, policy, stage, stages, started_at, decided_at, votes: [...]}, or None
    for a ticket that is not a change under approval."""
    if row is None:
        return None
    stages = row.plan.get("stages", [])
    return {"state": state_of(row.state, ticket_status), "outcome": row.state, "policy": row.policy,
            "stage": row.stage, "stages": len(stages),
            "quorum": [{"stage": i + 1, "kind": s["kind"], "quorum": s["quorum"], "of": len(s["approvers"])}
                       for i, s in enumerate(stages)],
            "started_at": _iso(row.started_at), "decided_at": _iso(row.decided_at),
            "votes": [{"stage": v.stage, "approver": v.approver, "status": v.status,
                       "requested_at": _iso(v.requested_at), "reminded_at": _iso(v.reminded_at),
                       "decided_at": _iso(v.decided_at), "comment": v.comment, "evidence": list(v.evidence),
                       "message_id": v.message_id} for v in row.votes]}


def approvals_text(row: ApprovalRow | None, ticket_status: str) -> list[str]:
    if row is None:
        return []
    out = [f"change:     {state_of(row.state, ticket_status)} ({row.policy}; stage {row.stage} of "
           f"{len(row.plan.get('stages', []))})"]
    for v in row.votes:
        when = v.decided_at.strftime("%Y-%m-%d %H:%M UTC") if v.decided_at else "-"
        out.append(f"  stage {v.stage}  {v.approver:<32} {v.status:<9} {when}  {v.comment[:60]}")
    return out
