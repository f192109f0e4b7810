"""A change's approval as planned and as templates see it (edge helpers of daemon.approvals).

`plan_json` freezes a policy into the stored plan, `stage_of` reads a stage back from it,
`approval_vars` is the `approval` template variable, `timer_due` whether the sweep has a
reminder or an expiry to do now (so it opens a write transaction only then).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from daemon.clock import stamp
from daemon.pipeline.approvals import Approver, Stage
from store.approvals_store import ApprovalRow


def plan_json(policy) -> dict:
    return {"name": policy.name, "remind_after": policy.remind_after.total_seconds(),
            "expire_after": policy.expire_after.total_seconds(),
            "stages": [{"kind": s.kind, "quorum": s.quorum,
                        "approvers": [{"email": a.email, "name": a.name} for a in s.approvers]}
                       for s in policy.stages]}


def stage_of(plan: dict, n: int) -> Stage:
    s = plan["stages"][n - 1]
    return Stage(s["kind"], tuple(Approver(a["email"], a.get("name", "")) for a in s["approvers"]), s["quorum"])


def approval_vars(row: ApprovalRow, **extra: Any) -> dict[str, Any]:
    """The `approval` template variable."""
    stage = stage_of(row.plan, row.stage) if row.plan.get("stages") else None
    expires = row.stage_started_at + timedelta(seconds=row.plan.get("expire_after", 0))
    out = {"stage": row.stage, "stages": len(row.plan.get("stages", ())), "state": row.state,
           "quorum": stage.quorum_text if stage else "", "expires": stamp(expires),
           "approvers": [a.email for a in stage.approvers] if stage else [],
           "decisions": [{"approver": v.approver, "status": v.status, "comment": v.comment, "stage": v.stage}
                         for v in row.votes if v.status not in ("pending", "superseded")], "outcome": "", "reason": "",
           "description": ""}
    out.update(extra)
    return out


def timer_due(row: ApprovalRow, now: datetime) -> bool:
    """Whether the change's stage expires, or one of its approvers is due a reminder, at `now`."""
    if row.state != "awaiting-approval" or not row.plan.get("stages"):
        return False
    if now >= row.stage_started_at + timedelta(seconds=row.plan["expire_after"]):
        return True
    remind = timedelta(seconds=row.plan["remind_after"])
    return any(v.status == "pending" and v.reminded_at is None and now >= v.requested_at + remind
               for v in row.stage_votes())
