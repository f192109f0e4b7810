"""Change approval through the real spool worker, store, rules, templates and outbox (huey
immediate, a recording relay, real DKIM signatures against a dict-backed DNS): a ticket
made a change by an agent's `#type change` by mail, a two-stage policy (a CAB with quorum
`any`, then one approver), the outcome mail, `implemented` once the change is resolved; an
edit of approvals.yaml is picked up for the next change, a broken edit keeps the last good
set; the same reply stored twice counts once. On SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import shutil

import pytest

from daemon.approval_view import approvals_json
from daemon.model import Envelope
from store.approvals_store import ApprovalStore
from tests.agentkit import Zone, agent_reply, reply_address, sign
from tests.conftest import REPO
from tests.e2e.helpers import helpdesk
from tests.integration.test_agents import parsed, sent_to
from tests.integration.test_outbox import close_desk, make_desk, new_mail

TWO_STAGES = """\
queues:
  general:
    cab:
      members: [xena@example.com, yuri@example.com]
      quorum: any
    then:
      approvers: [cio@example.com]
"""


@pytest.fixture
def desk(tmp_path, backend):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "approvals.yaml").write_text(TWO_STAGES)
    d = make_desk(tmp_path, backend.config_url, extra='[paths]\nrules = "rules"\n')
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.app.mail.agents.auth.lookup = zone                  # the approvals share the authenticator
    d.rules = rules
    yield d
    close_desk(d)


def signed_reply(d, request: bytes, who: str, text: str, n: int) -> bytes:
    return sign(agent_reply(request, text, frm=f"{who.split('@')[0].title()} <{who}>", n=n), "example.com", d.pem)


def reply(d, request: bytes, who: str, text: str, n: int, *, raw: bytes | None = None):
    body = raw or signed_reply(d, request, who, text, n)
    env = Envelope(who, (reply_address(request),), "smtp", "198.51.100.7", d.clock().isoformat())
    return d.app.worker.process(body, env)


def asked(d, who: str) -> list[bytes]:
    return [raw for _, rcpts, raw in d.relay.sent if who in rcpts and b"Approval needed" in raw]


def approval(d, tid: int = 1) -> dict:
    return approvals_json(ApprovalStore(d.store.engine).read(tid), d.store.ticket_detail(tid).ticket.status)


def test_two_stages_by_mail_from_type_change_to_implemented(desk):
    d = desk
    d.mail(new_mail(1, subject="Move the file server to the new rack"))
    notice = [raw for _, r, raw in d.relay.sent if "ana@example.com" in r][0]
    agent = sign(agent_reply(notice, "#type change\nWe will do this as a change."), "example.com", d.pem)
    d.app.worker.process(agent, Envelope("ana@example.com", (reply_address(notice),), "smtp", "198.51.100.7",
                                         d.clock().isoformat()))
    assert d.app.mail.approvals.sweep() == 1
    assert approval(d)["state"] == "awaiting-approval" and approval(d)["stages"] == 2
    first = asked(d, "xena@example.com")
    assert len(first) == 1 and len(asked(d, "yuri@example.com")) == 1 and not asked(d, "cio@example.com")
    assert "any one of 2" in parsed(first[0]).get_body(("plain",)).get_content()

    once = signed_reply(d, first[0], "xena@example.com", "approve", 1)
    assert reply(d, first[0], "xena@example.com", "", 1, raw=once).outcome == "agent:approval"
    assert reply(d, first[0], "xena@example.com", "", 1, raw=once).outcome == "duplicate"            # the same mail again
    assert approval(d)["stage"] == 2 and len(asked(d, "cio@example.com")) == 1
    assert [v["status"] for v in approval(d)["votes"] if v["stage"] == 1] == ["approved", "superseded"]
    d.clock.advance(hours=25)                              # past remind_after: only stage 2's cio is reminded
    d.app.mail.approvals.sweep()
    assert [rcpts for _, rcpts, raw in d.relay.sent if b"Reminder: approval needed" in raw] == [("cio@example.com",)]
    reply(d, asked(d, "yuri@example.com")[0], "yuri@example.com", "approve", 9)          # superseded: too late
    late = [m for m in sent_to(d, "yuri@example.com") if "Not recorded" in str(m["Subject"])]
    assert "stage 1 of this change was decided before your answer" in late[0].get_body(("plain",)).get_content()
    assert [v["status"] for v in approval(d)["votes"]] == ["approved", "superseded", "pending"]

    reply(d, asked(d, "cio@example.com")[0], "cio@example.com", "Approved. Go ahead on Saturday.", 2)
    shown = approval(d)
    assert shown["state"] == "approved" and shown["votes"][-1]["comment"] == "Go ahead on Saturday."
    told = [m for m in sent_to(d, "ann@example.org") if "Change approved" in str(m["Subject"])]
    assert len(told) == 1 and "xena@example.com: approved" in told[0].get_body(("plain",)).get_content()
    assert "yuri@example.com" not in told[0].get_body(("plain",)).get_content()     # superseded: no decision
    owner = [m for m in sent_to(d, "ana@example.com") if "Change approved" in str(m["Subject"])]   # the assignee
    assert len(owner) == 1 and "may be implemented now" in owner[0].get_body(("plain",)).get_content()
    assert owner[0]["Reply-To"].startswith("support+")
    assert not [m for m in sent_to(d, "ben@example.com") if "Change approved" in str(m["Subject"])]
    agent_mail(d, notice, "#resolve", 3)                            # approved: it may be implemented
    assert approval(d)["state"] == "implemented"
    text = helpdesk(d.app.config.sources[-1], "show", "HD-1", check=True).stdout.decode()
    assert "change:     implemented (queue general; stage 2 of 2)" in text
    assert "cio@example.com" in text and "Go ahead on Saturday." in text
    exported = json.loads(helpdesk(d.app.config.sources[-1], "export", check=True).stdout)
    assert exported[0]["approvals"] == approval(d)
    events = [e.kind for e in d.store.ticket_detail(1).events]
    assert events.count("approval") == 2 and events.count("approval_requested") == 2
    assert events.count("approval_superseded") == 1
    assert events.count("approval_outcome") == 1


def agent_mail(d, notice: bytes, text: str, n: int):
    raw = sign(agent_reply(notice, text, n=n), "example.com", d.pem)
    return d.app.worker.process(raw, Envelope("ana@example.com", (reply_address(notice),), "smtp", "198.51.100.7",
                                              d.clock().isoformat()))


def confirmed(d) -> str:
    """The text of the last command confirmation Ana got."""
    return [m for m in sent_to(d, "ana@example.com") if "Commands:" in str(m["Subject"])][-1] \
        .get_body(("plain",)).get_content()


def test_a_change_is_resolved_or_closed_only_as_its_approval_allows(desk):
    d = desk
    cfg = d.app.config.sources[-1]
    d.mail(new_mail(1, subject="Move the file server to the new rack"))
    notice = [raw for _, r, raw in d.relay.sent if "ana@example.com" in r][0]
    agent_mail(d, notice, "#type change\n#resolve", 1)             # before the sweep: not started yet
    assert d.store.ticket_detail(1).ticket.status != "resolved"
    assert "REFUSED" in confirmed(d) and "its approval has not started yet" in confirmed(d)
    d.app.mail.approvals.sweep()
    agent_mail(d, notice, "#close", 2)
    assert "HD-1 is a change and it is still awaiting approval" in confirmed(d)
    for n, who in enumerate(("xena@example.com", "yuri@example.com"), 3):
        reply(d, asked(d, who)[0], who, "reject: not this quarter", n)
    assert approval(d)["state"] == "rejected"
    cli = helpdesk(cfg, "update", "HD-1", "--status", "resolved", "--as", "ana@example.com", "--json")
    assert cli.returncode == 1 and b"was rejected: it cannot be implemented" in cli.stderr and not cli.stdout
    assert b"Traceback" not in cli.stderr
    assert d.store.ticket_detail(1).ticket.status not in ("resolved", "closed")
    agent_mail(d, notice, "#close", 5)                             # a rejected change is closed, never resolved
    assert d.store.ticket_detail(1).ticket.status == "closed" and approval(d)["state"] == "closed"


def test_an_edit_is_live_for_the_next_change_and_a_broken_one_keeps_the_last_good(desk):
    d = desk
    live = d.app.mail.approvals.live
    (d.rules / "approvals.yaml").write_text("default:\n  approvers: [boss@example.com]\n")
    assert live.reload() == []
    d.mail(new_mail(1, subject="Change: new VPN gateway"))
    with d.store.engine.begin() as c:                      # a rule would do this; here the row is enough
        c.exec_driver_sql("UPDATE ticket SET type = 'change' WHERE id = 1")
    (d.rules / "approvals.yaml").write_text("default:\n  approvers: [nobody]\n")
    assert live.reload() and live.current().default.stages[0].approvers[0].email == "boss@example.com"
    d.app.mail.approvals.sweep()
    assert [v["approver"] for v in approval(d)["votes"]] == ["boss@example.com"]
    assert len(asked(d, "boss@example.com")) == 1
