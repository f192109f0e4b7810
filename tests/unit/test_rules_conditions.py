"""Every condition: a hit and a miss, with the reason it gives."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from daemon.pipeline.evaluate import evaluate
from daemon.pipeline.facts import Facts, guess_language
from daemon.rules import conditions, load_rules
from daemon.rules.declarations import Calendar
from daemon.rules.registry import Registry
from tests.unit.test_rules_support import MONDAY_10, attachment, msg, rules_yaml, write_rules


@pytest.fixture
def check(tmp_path):
    """check(when_yaml, message, now=..., rcpts=...) -> (hit, reason) for a one-rule set."""
    counter = iter(range(1000))

    def run(when: str, message, *, now: datetime = MONDAY_10, rcpts: tuple[str, ...] = ()):
        root = write_rules(tmp_path / f"r{next(counter)}",
                           routing=rules_yaml(f"- {{name: r, when: {when}, then: {{type: request}}}}"))
        rs = load_rules(root)
        ev = evaluate(rs, Facts(message, now, rs.calendar, rcpts), "new")
        (_, hit, why), = ev.trials
        return hit, why
    return run


def test_subject_contains_equals_matches(check):
    m = msg(subject="VPN is DOWN again")
    assert check("{subject: down}", m) == (True, "subject contains 'down'")
    assert check("{subject: [printer, vpn]}", m) == (True, "subject contains 'vpn'")
    assert check("{subject: printer}", m) == (False, "subject does not contain 'printer'")
    assert check("{subject: {equals: 'vpn is down again'}}", m)[0] is True
    assert check("{subject: {equals: vpn}}", m) == (False, "subject does not equal 'vpn'")
    assert check(r"{subject: {matches: '\bdown\b'}}", m) == (True, "subject matches /\\bdown\\b/ ('down')")
    assert check(r"{subject: {matches: '^down'}}", m) == (False, "subject does not match /^down/")


def test_body_uses_text_else_html_without_tags(check):
    assert check("{body: 'printer'}", msg(text="The PRINTER jams"))[0] is True
    html = msg(text="", html="<p>The <b>printer</b> jams</p><img src='printer.png'>")
    assert check("{body: {matches: 'the +printer'}}", html)[0] is True
    assert check("{body: 'png'}", html)[0] is False           # attribute text is not body text


def test_sender_and_domain(check):
    m = msg(sender="Joan@Board.Example.com")
    assert check("{from: {equals: joan@board.example.com}}", m)[0] is True
    assert check("{from_domain: example.com}", m) == (True, "sender domain is 'board.example.com'")
    assert check("{from_domain: [board.example.com]}", m)[0] is True
    assert check("{from_domain: ample.com}", m)[0] is False    # a suffix is not a subdomain
    assert check("{from_domain: x.org}", msg(sender=None)) == (False, "sender domain not in ['x.org']")


def test_recipients_include_cc_and_envelope(check):
    m = msg(to=("someone@example.com",), cc=("Helpdesk@Example.com",))
    assert check("{to: {equals: helpdesk@example.com}}", m) == \
        (True, "recipient 'helpdesk@example.com' is 'helpdesk@example.com'")
    assert check("{to: {equals: hidden@example.com}}", m) == \
        (False, "recipients: none equal 'hidden@example.com'")
    assert check("{to: {equals: hidden@example.com}}", m, rcpts=("hidden@example.com",))[0] is True


def test_plus_address_detail(check):
    m = msg(to=("support+VPN@example.com",))
    assert check("{plus: {equals: vpn}}", m) == (True, "plus-address detail 'vpn' is 'vpn'")
    assert check("{plus: security}", m) == (False, "plus-address details: none contain 'security'")
    assert check("{plus: vpn}", msg())[0] is False


def test_any_header(check):
    m = msg(headers=(("X-Priority", "1 (Highest)"), ("Received", "a"), ("Received", "from mx.example")))
    assert check("{header: {name: x-priority, matches: '^1'}}", m) == \
        (True, "header x-priority matches /^1/ ('1')")
    assert check("{header: {name: Received, contains: mx.example}}", m)[0] is True   # any value
    assert check("{header: {name: X-Priority, present: true}}", m) == (True, "header X-Priority present")
    assert check("{header: {name: List-Id, present: false}}", m) == (True, "header List-Id absent")
    assert check("{header: {name: List-Id, present: true}}", m) == (False, "header List-Id absent")
    assert check("{header: {name: List-Id, contains: x}}", m) == (False, "header List-Id: none contain 'x'")


def test_attachments(check):
    files = msg(attachments=(attachment("Report.PDF", "application/pdf"),
                             attachment("logo.png", "image/png", inline=True)))
    assert check("{has_attachment: true}", files)[0] is True
    assert check("{has_attachment: false}", msg()) == (True, "has_attachment is false")
    assert check("{has_attachment: true}", msg(attachments=(attachment("a.png", "image/png", inline=True),)))[0] \
        is False                                                # inline images do not count
    assert check("{attachment_type: [application/pdf]}", files) == (True, "attachment 'report.pdf' is application/pdf")
    assert check("{attachment_type: ['image/*']}", files)[0] is False
    assert check("{attachment_type: ['application/*']}", files)[0] is True
    assert check(r"{attachment_name: {matches: '\.pdf$'}}", files)[0] is True
    assert check("{attachment_name: xlsx}", files) == (False, "attachment names: none contain 'xlsx'")


def test_machine_verdict(check):
    assert check("{machine: [bulk, list]}", msg(machine="bulk")) == (True, "machine verdict is bulk")
    assert check("{machine: human}", msg(machine="auto_reply")) == (False, "machine verdict not in ['human']")


def test_language_from_parse_or_guessed(check):
    assert check("{language: [de]}", msg(language="DE"))[0] is True
    german = msg(text="Hallo, der Drucker im zweiten Stock druckt nicht. Könnt ihr bitte nachsehen? Danke")
    assert check("{language: de}", german) == (True, "language is de")
    assert check("{language: [fr]}", german) == (False, "language not in ['fr'] (de)")
    assert check("{language: [en]}", msg(text="ok")) == (False, "language not in ['en'] (unknown)")


def test_guess_language_is_conservative():
    assert guess_language("Thanks, the printer on the third floor is not working and we have a deadline") == "en"
    assert guess_language("Bonjour, je ne peux pas imprimer depuis ce matin, merci pour votre aide") == "fr"
    assert guess_language("ok thx") is None
    assert guess_language("12345 67890 !!!") is None


def test_business_hours_uses_the_calendar(check):
    m = msg()
    assert check("{business_hours: true}", m, now=MONDAY_10) == (True, "in business hours")
    evening = datetime(2026, 3, 2, 18, 30, tzinfo=timezone.utc)
    assert check("{business_hours: true}", m, now=evening) == (False, "outside business hours")
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=timezone.utc)
    assert check("{business_hours: false}", m, now=saturday)[0] is True
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=timezone.utc)           # a Friday, but a holiday
    assert check("{business_hours: false}", m, now=christmas)[0] is True
    summer = datetime(2026, 7, 6, 7, 30, tzinfo=timezone.utc)                # 08:30 BST in London
    assert check("{business_hours: true}", m, now=summer)[0] is True
    naive = datetime(2026, 3, 2, 10, 0)                                       # naive = UTC
    assert check("{business_hours: true}", m, now=naive)[0] is True


def test_time_window_with_days_and_midnight_wrap(check):
    m = msg()
    night = "{time: {from: '22:00', to: '06:00'}}"
    assert check(night, m, now=datetime(2026, 3, 2, 23, 15, tzinfo=timezone.utc))[0] is True
    assert check(night, m, now=datetime(2026, 3, 3, 5, 59, tzinfo=timezone.utc))[0] is True
    hit, why = check(night, m, now=MONDAY_10)
    assert not hit and why == "local time not within any day 22:00-06:00"
    weekend = "{time: {days: [saturday, sun]}}"
    assert check(weekend, m, now=datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc)) == \
        (True, "local time Sun 12:00 within sat/sun 00:00-24:00")
    assert check(weekend, m, now=MONDAY_10)[0] is False


def test_combinators(check):
    m = msg(subject="VPN down", sender="a@vip.example")
    assert check("{subject: vpn, from_domain: vip.example}", m) == \
        (True, "subject contains 'vpn' and sender domain is 'vip.example'")
    assert check("{subject: vpn, from_domain: other.example}", m) == \
        (False, "sender domain not in ['other.example']")
    assert check("{all: [{subject: vpn}, {subject: down}]}", m)[0] is True
    assert check("{any: [{subject: printer}, {subject: vpn}]}", m) == (True, "subject contains 'vpn'")
    assert check("{any: [{subject: printer}, {body: toner}]}", m) == \
        (False, "none of: subject does not contain 'printer'; body does not contain 'toner'")
    assert check("{not: {subject: printer}}", m) == (True, "not (subject does not contain 'printer')")
    assert check("{not: {any: [{subject: vpn}]}}", m)[0] is False


def test_a_rule_without_when_always_matches(tmp_path):
    root = write_rules(tmp_path / "r", routing=rules_yaml("- {name: all, then: {tags: [vip]}, continue: true}"))
    rs = load_rules(root)
    ev = evaluate(rs, Facts(msg(), MONDAY_10, rs.calendar), "new")
    assert ev.trials[0][1:] == (True, "always")


def test_facts_are_lazy_and_cached():
    f = Facts(msg(subject="ABC"), MONDAY_10, Calendar())
    assert "body" not in f.__dict__
    assert f.subject == "abc" and f.subject is f.subject


def test_duplicate_registration_fails_at_import_time():
    reg: Registry = Registry("condition")
    reg.register("subject")(lambda arg, ctx: None)
    with pytest.raises(ValueError, match="duplicate condition 'subject'"):
        reg.register("subject")(lambda arg, ctx: None)
    with pytest.raises(ValueError, match="duplicate condition 'subject'"):
        conditions.condition("subject")(lambda arg, ctx: None)


def test_every_registered_condition_is_documented():
    for name in conditions.CONDITIONS.names():
        assert conditions.CONDITIONS.get(name).__doc__, name
