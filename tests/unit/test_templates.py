"""Templates: load-time validation (file:line), sandbox, escaping, selection, live reload
(reliability.md G 81-83, 87)."""
from __future__ import annotations

import shutil
from pathlib import Path

import jinja2
import pytest

from daemon.errors import RulesError
from daemon.pipeline.render import REQUIRED, build_context, message_vars, split_subject
from daemon.templates import LiveTemplates, load_templates

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "templates"


def ctx(text: str = "It jams.", *, agent: bool = False, sla=None, message: bool = True):
    return build_context(
        desk={"name": "Desk", "address": "support@example.com"},
        ticket={"id": 7, "ref": "HD-7", "tag": "[HD-7]", "subject": "Printer", "status": "new", "priority": "P3",
                "queue": "general", "type": "incident", "created": "2026-03-02 09:30 UTC",
                "requester": "ann@example.org"},
        requester={"name": "Ann", "email": "ann@example.org", "display": "Ann"},
        message=message_vars("Printer", text, "Ann", "ann@example.org", "2026-03-02 09:30 UTC") if message else None,
        queue={"name": "general", "description": ""}, lang="en", reply_to="support@example.com",
        agent={"name": "Ben", "email": "ben@example.com", "role": "agent", "display": "Ben"} if agent else None,
        sla=sla)


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A template directory: the shipped defaults plus/overridden by `files`."""
    root = tmp_path / "templates"
    shutil.copytree(SHIPPED, root)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_templates(root)
    return info.value.problems


def test_jinja_is_recent_enough():
    assert tuple(int(x) for x in jinja2.__version__.split(".")[:3]) >= (3, 1, 6)


def test_shipped_templates_load_with_german():
    t = load_templates(SHIPPED)
    assert set(REQUIRED) <= t.names and "de" in t.languages
    assert {"de/requester/ack", "de/requester/reopen", "de/requester/resolve"} <= t.names


def test_user_text_is_data_not_template_source():
    t = load_templates(SHIPPED)
    evil = "{{ 7*7 }} {% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}"
    out = t.render("requester/ack", ctx(evil), "x")
    assert "{{ 7*7 }}" in out.text and "49" not in out.text
    assert "{% for c in ''.__class__.__mro__[1].__subclasses__() %}" in out.text
    agent = t.render("agent/new", ctx(evil, agent=True), "x")
    assert "{{ 7*7 }}" in agent.text


def test_html_escapes_customer_text():
    out = load_templates(SHIPPED).render("requester/ack", ctx('<script>alert(1)</script> & "x"'), "x")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;x&#34;" in out.html
    assert "<script>" not in out.html
    assert "<script>alert(1)</script>" in out.text                    # the text part is plain text


def test_subject_line_and_sla_optional():
    t = load_templates(SHIPPED)
    out = t.render("requester/ack", ctx(), "default")
    assert out.subject == "[HD-7] Printer" and not out.text.startswith("Subject")
    with_sla = t.render("requester/ack", ctx(sla={"response_due": "R-DUE", "resolution_due": "X-DUE"}), "d")
    assert "R-DUE" in with_sla.text and "X-DUE" in with_sla.text and "R-DUE" not in out.text
    assert split_subject("no subject line\n") == (None, "no subject line\n")


@pytest.mark.parametrize("source, needle", [
    ("Subject: x\n\nline\n{{ ''.__class__.__mro__ }}\n", ":4: not allowed in templates (sandbox)"),
    ("Subject: x\n\n{{ desk.name|attr('format') }}\n", ":3: not allowed in templates (sandbox)"),
    ("Subject: x\n\n{{ desk.name.upper() }}\n", ":3: not allowed in templates (sandbox)"),
    ("Subject: x\n\nHello\n\n{{ custmer.name }}\n", ":5: undefined: 'custmer' is undefined"),
    ("Subject: x\n\n{% if sla %}ok{% endif %}\n{{ sla.response_due }}\n", ":4: undefined"),
    ("Subject: x\n\n{% if %}\n", ":3: "),
    ("Subject: {{ '' }}\n\nbody\n", ":1: the Subject: line renders empty"),
])
def test_bad_admin_templates_fail_the_load_naming_file_and_line(tmp_path, source, needle):
    root = tree(tmp_path, {"requester/ack.txt.j2": source})
    found = problems(root)
    assert len(found) == 1 and found[0].startswith(str(root / "requester" / "ack.txt.j2")) and needle in found[0]


def test_resolve_must_guard_the_absent_message(tmp_path):
    root = tree(tmp_path, {"requester/resolve.txt.j2": "Subject: x\n\n{{ message.text }}\n"})
    assert "undefined" in problems(root)[0]
    root = tree(tmp_path / "b", {"requester/ack.txt.j2": "Subject: x\n\n{{ agent.name }}\n"})
    assert "'agent' is undefined" in problems(root)[0]                  # agent only in agent templates


def test_layout_problems(tmp_path):
    root = tree(tmp_path, {"customer/ack.txt.j2": "x", "requester/vip.html.j2": "<p>x</p>",
                           "queues/network/requester/a/b.txt.j2": "x"})
    (root / "agent" / "new.txt.j2").unlink()
    found = "\n".join(problems(root))
    assert "customer/ack.txt.j2:1: expected <audience>/<event>.txt.j2" in found
    assert "vip.html.j2:1: an HTML template needs its text template requester/vip.txt.j2" in found
    assert "queues/network/requester/a/b.txt.j2:1: expected" in found
    assert "agent/new.txt.j2:1: required template is missing" in found


def test_selection_queue_and_language(tmp_path):
    root = tree(tmp_path, {"queues/network/requester/ack.txt.j2": "Subject: net\n\nnet\n",
                           "queues/network/de/requester/ack.txt.j2": "Subject: netde\n\nnetde\n",
                           "fr/requester/ack.txt.j2": "Subject: fr\n\nfr\n"})
    t = load_templates(root)
    assert t.find("requester", "ack") == "requester/ack"
    assert t.find("requester", "ack", lang="de") == "de/requester/ack"
    assert t.find("requester", "ack", lang="xx") == "requester/ack"               # unknown language: default
    assert t.find("requester", "ack", queue="network") == "queues/network/requester/ack"
    assert t.find("requester", "ack", queue="network", lang="de") == "queues/network/de/requester/ack"
    assert t.find("requester", "ack", queue="network", lang="fr") == "fr/requester/ack"
    assert t.find("requester", "ack", queue="general", lang="fr") == "fr/requester/ack"
    assert t.find("requester", "nope") is None
    assert t.render("fr/requester/ack", ctx(), "d").lang == "fr"


def test_live_templates_keep_the_last_good_set(tmp_path):
    root = tree(tmp_path, {})
    live = LiveTemplates(root)
    good = live.current
    (root / "requester" / "ack.txt.j2").write_text("Subject: x\n\n{{ nope }}\n")
    found = live.reload()
    assert found and "undefined" in found[0] and live.current is good and live.last_problems == found
    (root / "requester" / "ack.txt.j2").write_text("Subject: new {{ ticket.tag }}\n\nnew\n")
    assert live.reload() == [] and live.current is not good
    assert live.current.render("requester/ack", ctx(), "d").subject == "new [HD-7]"


def test_load_refuses_a_missing_directory(tmp_path):
    assert "templates directory not found" in problems(tmp_path / "none")[0]
