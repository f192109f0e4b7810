"""`helpdesk rules replay`: stored first messages routed by the live and candidate rules,
nothing changed, each differing ticket listed with the rules before and after; a stored
month of mail cut by `--since`."""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from daemon.cli import main
from tests.conftest import REPO
from tests.integration.test_outbox import close_desk, make_desk, new_mail

PRINTERS = """rules:
  - name: printers-to-workplace
    description: "Printers are the workplace team's"
    when:
      subject: [printer]
    then:
      queue: workplace
      tags: [hardware]
"""


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path)
    yield d
    close_desk(d)


def candidate(tmp_path):
    rules = tmp_path / "candidate"
    shutil.copytree(REPO / "rules", rules)
    text = (rules / "routing.yaml").read_text()
    (rules / "routing.yaml").write_text(text.replace("rules:\n", PRINTERS, 1))
    return rules


def test_replay_lists_what_the_candidate_rules_would_change_and_changes_nothing(desk, tmp_path, capsys):
    desk.mail(new_mail(1, subject="Printer jams"))
    desk.mail(new_mail(2, frm="bob@example.org", subject="Password expired"))
    desk.mail(new_mail(3, frm="cy@example.org", subject="The printer on floor 2 is offline"))
    before = [(t.id, t.queue, t.updated_at) for t in desk.store.list_tickets()]
    site = ["--config", str(tmp_path / "site.toml")]
    assert main(site + ["rules", "replay", "--rules", str(candidate(tmp_path)), "--since", "2026-01-01",
                        "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["routed"], got["changed"]) == (3, 2)
    assert [c["ref"] for c in got["changes"]] == ["HD-1", "HD-3"]
    first = got["changes"][0]
    assert first["fields"]["queue"] == {"before": "general", "after": "workplace"}
    assert "hardware" in first["fields"]["tags"]["after"]
    assert any("printers-to-workplace" in h for h in first["after_hits"])
    assert got["summary"]["queue"] == 2 and got["summary"]["priority"] == 0
    assert [(t.id, t.queue, t.updated_at) for t in desk.store.list_tickets()] == before
    assert main(site + ["rules", "replay", "--rules", str(candidate(tmp_path / "x")), "--since", "2026-01-01"]) == 0
    text = capsys.readouterr().out
    assert "2 would be routed differently" in text and "general -> workplace" in text
    assert "\nHD-1  Printer jams\n" in text, text
    assert re.search(r"after:  routing\.yaml:\d+ printers-to-workplace: subject contains", text), text
    assert main(site + ["rules", "replay", "--rules", str(REPO / "rules"), "--since", "2026-01-01"]) == 0
    assert "0 would be routed differently" in capsys.readouterr().out
    assert main(site + ["rules", "replay", "--rules", str(tmp_path / "nowhere")]) == 1


def test_replay_of_a_stored_month_routes_only_the_mail_since_the_date(desk, tmp_path, capsys):
    """A month of mail, one first message a day (every third about a printer), stored through
    the real worker with the clock moved between them; `--since` cuts the month."""
    start = datetime(2026, 2, 1, 9, tzinfo=timezone.utc)
    subjects = ("Printer on floor {} jams", "Password expired ({})", "VPN drops again ({})")
    for day in range(35):
        desk.clock.now = start + timedelta(days=day, minutes=7 * day)
        assert desk.mail(new_mail(100 + day, frm=f"u{day}@example.org",
                                  subject=subjects[day % 3].format(day))).outcome == "created"
    site = ["--config", str(tmp_path / "site.toml"), "rules", "replay", "--rules", str(candidate(tmp_path))]
    assert main(site + ["--since", "2026-02-08", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    month = [d for d in range(35) if start + timedelta(days=d) >= datetime(2026, 2, 8, tzinfo=timezone.utc)]
    assert got["routed"] == len(month) == 28
    assert got["changed"] == len([d for d in month if d % 3 == 0]) and got["summary"]["queue"] == got["changed"]
    assert {c["fields"]["queue"]["after"] for c in got["changes"]} == {"workplace"}
    assert main(site + ["--since", "2026-01-01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["routed"] == 35
