"""`helpdesk update` / `helpdesk reply` take the mail path: the same change made by an agent's
(DKIM-signed) mail on one ticket and from the command line on a twin ticket leaves the same
events, message rows and outbox mails (kinds, recipients, subjects). Real spool worker,
store, rules, templates and planner (tests.integration.test_outbox's Desk)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from daemon.cli import main
from daemon.desk_cli import Act, BadValue, Refused, perform
from daemon.model import Envelope
from tests.agentkit import Zone, agent_reply, sign
from tests.integration.test_agents import opened, send_agent
from tests.integration.test_outbox import close_desk, make_desk, parsed


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path)
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.app.mail.agents.auth.lookup = zone
    yield d
    close_desk(d)


def _same(text: str) -> str:
    return re.sub(r"HD-\d+", "HD-N", text)


def footprint(d, tid: int):
    """What a change left on ticket `tid`: event kinds (with their details, ticket numbers
    blanked), message rows and the outbox rows (kind, recipients, subject)."""
    t = d.store.ticket_detail(tid)
    events = [(e.kind, _detail(e.detail)) for e in t.events]
    messages = [(x.direction, x.visibility, x.from_addr) for x in t.messages]
    mails = sorted((r.kind, tuple(a for a, _, _ in r.recipients), _same(str(parsed(r.raw)["Subject"])))
                   for r in d.rows(ticket_id=tid))
    return events, messages, mails, (t.ticket.status, t.ticket.priority, t.ticket.queue, t.ticket.assignee)


def _detail(text: str):
    """An event's detail without what names this very mail (its Message-ID, evidence)."""
    try:
        detail = json.loads(text)
    except ValueError:
        return _same(text)
    return _same(json.dumps(_strip(detail), sort_keys=True))


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("evidence", "message_id", "outbox")}
    return [_strip(v) for v in value] if isinstance(value, list) else value


def twins(d):
    first = opened(d, 1)
    opened(d, 2, subject="Printer jams")
    return first


@pytest.mark.parametrize("body,act", [
    ("#pending\n#priority P2\n#tag vip\n\nWhich floor, Ann?",
     dict(commands=("status pending", "priority P2", "tag vip"), text="Which floor, Ann?")),
    ("#assign me\n#queue network", dict(commands=("assign me", "queue network"))),
    ("#resolve", dict(commands=("resolve",))),
    ("#resolve\nFixed: the tray was loose.", dict(commands=("resolve",), text="Fixed: the tray was loose.")),
    ("#note\nTray looked loose.", dict(text="Tray looked loose.", note=True)),
])
def test_the_command_line_leaves_what_the_mail_leaves(desk, body, act):
    notice = twins(desk)
    send_agent(desk, agent_reply(notice, body))
    result = perform(desk.app, Act(2, "ana@example.com", **act))
    assert result.outcome == "agent:acted" and result.ticket_id == 2
    by_mail, by_cli = footprint(desk, 1), footprint(desk, 2)
    assert by_cli == by_mail
    assert by_cli[2]                                      # and mail was planned at all


def test_an_answer_from_the_command_line_reaches_the_customer(desk):
    twins(desk)
    perform(desk.app, Act(2, "ana@example.com", ("resolve",), "Fixed: the tray was loose.", via="reply"))
    got = [raw for _, rcpts, raw in desk.relay.sent if rcpts == ("ann@example.org",)]
    last = got[-1].decode()
    assert "Subject: Re: [HD-2] Printer jams" in last and "the tray was loose" in last and "#resolve" not in last
    assert "support+" not in last and desk.store.ticket_detail(2).ticket.status == "resolved"


def test_unknown_agent_no_rights_and_bad_values_are_refused_before_anything_is_written(desk):
    twins(desk)
    before = footprint(desk, 2)
    with pytest.raises(Refused, match="not a registered agent.*ana@example.com"):
        perform(desk.app, Act(2, "mallory@example.com", ("resolve",)))
    with pytest.raises(Refused, match="not an agent of queue general"):
        perform(desk.app, Act(2, "chen@example.com", ("resolve",)))
    with pytest.raises(BadValue, match="unknown queue 'netwrok'; declared: .*network"):
        perform(desk.app, Act(2, "ana@example.com", ("queue netwrok",)))
    assert footprint(desk, 2) == before


def test_cli_exit_codes_and_json(desk, tmp_path, capsys):
    desk.clock.now = datetime.now(timezone.utc)      # the command line runs on the wall clock
    twins(desk)
    site = ["--config", str(tmp_path / "site.toml")]
    assert main(site + ["update", "HD-2", "--as", "ana@example.com", "--assign", "ben@example.com", "--tag", "vip",
                        "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["ref"], shown["assignee"]) == ("HD-2", "ben@example.com")
    assert set(shown["tags"]) - {"after-hours"} == {"vip"}      # wall clock: after-hours outside office time
    assert main(site + ["update", "HD-2", "--as", "nobody@example.com", "--priority", "P1"]) == 1
    assert "not a registered agent" in capsys.readouterr().err
    assert main(site + ["update", "HD-2", "--as", "ana@example.com", "--queue", "netwrok"]) == 2
    assert "declared: " in capsys.readouterr().err
    assert main(site + ["update", "HD-2", "--as", "ana@example.com"]) == 2
    assert main(site + ["reply", "HD-2", "--as", "ana@example.com", "-m", "On it.", "--resolve"]) == 0
    assert "HD-2: resolved" in capsys.readouterr().out
    assert desk.store.ticket_detail(2).messages[-1].text == "On it."


def test_unknown_filter_values_exit_2_naming_the_valid_ones(desk, tmp_path, capsys):
    twins(desk)
    site = ["--config", str(tmp_path / "site.toml")]
    assert main(site + ["tickets", "--status", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "--status 'bogus': unknown; valid: closed, new, open, pending, resolved" in err
    assert main(site + ["tickets", "--queue", "netwrok"]) == 2
    assert "(did you mean 'network'?)" in capsys.readouterr().err
    assert main(site + ["tickets", "--type", "incidnet", "--status", "opne"]) == 2
    err = capsys.readouterr().err
    assert "--status 'opne'" in err and "--type 'incidnet'" in err
    assert main(site + ["tickets", "--queue", "General", "--status", "NEW", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 0        # stored names are compared exactly
    assert main(site + ["tickets", "--queue", "general", "--status", "new", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_agents_lists_queues_roles_and_open_assigned(desk, tmp_path, capsys):
    twins(desk)
    perform(desk.app, Act(1, "ana@example.com", ("assign ben@example.com",)))
    perform(desk.app, Act(2, "ana@example.com", ("assign ben@example.com", "resolve")))
    site = ["--config", str(tmp_path / "site.toml")]
    assert main(site + ["agents", "--json"]) == 0
    rows = {r["email"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ben@example.com"]["queues"] == ["general", "workplace"]
    assert rows["ben@example.com"]["open_assigned"] == 1 and rows["ana@example.com"]["open_assigned"] == 0
    assert rows["ana@example.com"]["roles"][0] == "lead"
    assert main(site + ["agents"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("AGENT") and "general (agent), workplace (agent)" in text


# ---------------------------------------------------------------------- macros
def test_a_macro_by_mail_answers_the_customer_and_makes_its_changes(desk):
    notice = twins(desk)
    send_agent(desk, agent_reply(notice, "#macro password-reset\n\nBest, Ana"))
    t = desk.store.ticket_detail(1)
    assert (t.ticket.status, t.tags) == ("pending", ("access",)) or (t.ticket.status, list(t.tags)) == \
        ("pending", ["access"])
    reply = [parsed(raw) for _, rcpts, raw in desk.relay.sent if rcpts == ("ann@example.org",)][-1]
    text = reply.get_body(("plain",)).get_content()
    assert "password.example.com" in text and "Ana Lima, IT Service Desk (HD-1)" in text and "Best, Ana" in text
    assert "#macro" not in text


def test_an_unknown_macro_is_refused_by_mail_with_the_list(desk):
    notice = twins(desk)
    n = len([1 for _, rcpts, _ in desk.relay.sent if rcpts == ("ann@example.org",)])
    send_agent(desk, agent_reply(notice, "#macro pasword-reset", quote=False))
    confirm = [parsed(raw) for _, rcpts, raw in desk.relay.sent if rcpts == ("ana@example.com",)][-1]
    body = confirm.get_body(("plain",)).get_content()
    assert "unknown macro 'pasword-reset'; macros: need-details, password-reset" in body
    assert len([1 for _, rcpts, _ in desk.relay.sent if rcpts == ("ann@example.org",)]) == n
    assert desk.store.ticket_detail(1).ticket.status == "new"


def test_reply_with_a_macro_is_the_mail_path_too(desk):
    notice = twins(desk)
    send_agent(desk, agent_reply(notice, "#macro need-details"))
    perform(desk.app, Act(2, "ana@example.com", ("macro need-details",), "", via="reply"))
    assert footprint(desk, 1) == footprint(desk, 2)
    assert desk.store.ticket_detail(2).messages[-1].text.startswith("Hello,\n\nto look into \"Printer jams\"")


# ---------------------------------------------------------------------- #help, #mine, #queue by mail
def to_desk(n: int, body: str) -> bytes:
    return (f"From: Ana Lima <ana@example.com>\r\nTo: support@example.com\r\nSubject: desk\r\n"
            f"Date: Mon, 02 Mar 2026 09:40:00 +0000\r\nMessage-ID: <q{n}@example.com>\r\n\r\n{body}\r\n").encode()


def last_to_ana(d) -> str:
    raw = [raw for _, rcpts, raw in d.relay.sent if rcpts == ("ana@example.com",)][-1]
    return parsed(raw).get_body(("plain",)).get_content()


def test_help_mine_and_queue_answer_by_mail_instead_of_opening_a_ticket(desk):
    twins(desk)
    perform(desk.app, Act(1, "ana@example.com", ("assign me", "priority P2")))
    assert send_agent(desk, to_desk(1, "#help")).outcome == "agent:help"
    text = last_to_ana(desk)
    assert "#priority" in text and "password-reset" in text and "Your queues: general" in text
    assert send_agent(desk, to_desk(2, "#mine")).outcome == "agent:mine"
    text = last_to_ana(desk)
    assert "1 open ticket(s)" in text and "HD-1  P2" in text and "HD-2" not in text
    assert re.search(r"HD-1  P2  new +Printer jams  \(SLA: first response in \d+h\d\d\)", text), text
    address = re.search(r"reply to work it: (support\+\S+@example\.com)", text).group(1)
    assert send_agent(desk, to_desk(3, "#queue general")).outcome == "agent:queue"
    assert "HD-1" in last_to_ana(desk) and "HD-2" in last_to_ana(desk)
    send_agent(desk, to_desk(4, "#queue network"))
    assert "You are not an agent of queue network" in last_to_ana(desk)
    assert len(desk.store.list_tickets()) == 2                       # no ticket was opened
    raw = (f"From: Ana Lima <ana@example.com>\r\nTo: {address}\r\nSubject: Re: HD-1\r\n"
           f"Message-ID: <q5@example.com>\r\n\r\n#pending\r\n").encode()
    assert send_agent(desk, raw, to=address).outcome == "agent:acted"    # the listed address works the ticket
    assert desk.store.ticket_detail(1).ticket.status == "pending"


def test_a_help_delivered_twice_is_answered_once(desk):
    """Issue 17 defect: an MTA retry or an IMAP re-poll delivers the same #help again."""
    twins(desk)
    asked = sign(to_desk(1, "#help"), "example.com", desk.pem)      # signed once: the same bytes each time
    before = len([1 for _, rcpts, _ in desk.relay.sent if rcpts == ("ana@example.com",)])
    assert send_agent(desk, asked, signed=False).outcome == "agent:help"
    again = b"Received: from mx2.example.com by mx.example.com; Mon, 2 Mar 2026 09:41:00 +0000\r\n" + asked
    assert send_agent(desk, again, signed=False).outcome == "duplicate"   # a trace header more: the same mail
    assert send_agent(desk, asked, signed=False).outcome == "duplicate"
    answers = [raw for _, rcpts, raw in desk.relay.sent if rcpts == ("ana@example.com",)][before:]
    assert len(answers) == 1 and len(desk_answers(desk)) == 1
    assert send_agent(desk, to_desk(2, "#help")).outcome == "agent:help"     # another mail: answered
    assert len(desk_answers(desk)) == 2


def test_two_copies_of_a_help_in_one_spool_batch_get_one_answer(desk):
    twins(desk)
    signed = sign(to_desk(7, "#help"), "example.com", desk.pem)
    env = Envelope("ana@example.com", ("support@example.com",), "smtp", "198.51.100.7", desk.clock().isoformat())
    desk.app.spool.put(signed, env)
    desk.app.spool.put(signed, env)
    assert desk.app.worker.drain() == 2
    assert len(desk_answers(desk)) == 1


def desk_answers(d) -> list:
    return [r for r in d.rows() if r.kind == "agent_desk"]


def test_an_unauthenticated_help_is_not_answered(desk):
    twins(desk)
    n = len(desk.relay.sent)
    result = send_agent(desk, to_desk(1, "#mine"), signed=False)
    assert result.outcome != "agent:mine"
    assert not [1 for _, rcpts, raw in desk.relay.sent[n:] if b"open ticket(s)" in raw]
