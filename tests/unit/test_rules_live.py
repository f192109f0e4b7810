"""LiveRules: last good set on error, atomic swap under load, debounced watching."""
from __future__ import annotations

import logging
import os
import textwrap
import threading
import time

import pytest

from daemon.errors import RulesError
from daemon.pipeline.classify import Defaults, classify
from daemon.rules import load_rules
from daemon.rules.live import LiveRules, watch
from tests.unit.test_rules_support import MONDAY_10, NEW, msg, rules_yaml, write_rules

ALPHA = rules_yaml("- {name: to-general, when: {subject: x}, then: {queue: general, tags: [vip]}}")
BETA = rules_yaml("- {name: to-network, when: {subject: x}, then: {queue: network, tags: [outage]}}")
BROKEN = rules_yaml("- {name: broken, when: {subject: {matches: '(a+)+'}}, then: {queue: nowhere}}")


def put(root, text: str) -> None:
    """Replace routing.yaml atomically (as a careful editor or git checkout does)."""
    tmp = root / ".routing.yaml.tmp"
    tmp.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")     # as write_rules does
    os.replace(tmp, root / "routing.yaml")


def test_start_refuses_invalid_rules(tmp_path):
    root = write_rules(tmp_path / "r", routing=BROKEN)
    with pytest.raises(RulesError) as info:
        LiveRules(root)
    assert len(info.value.problems) == 2


def test_reload_swaps_on_success_and_keeps_last_good_on_error(tmp_path, caplog):
    root = write_rules(tmp_path / "r", routing=ALPHA)
    live = LiveRules(root)
    first = live.current
    assert live.reload() == [] and live.current is first          # unchanged: same object kept
    put(root, BROKEN)
    with caplog.at_level(logging.ERROR, logger="daemon.rules.live"):
        problems = live.reload()
    assert len(problems) == 2 and all("routing.yaml:" in p for p in problems)
    assert live.current is first and live.last_problems == problems
    assert f"keeping version {first.version}" in caplog.text and "exponential time" in caplog.text
    put(root, BETA)
    assert live.reload() == [] and live.current.version != first.version
    assert live.current.rules[0].name == "to-network" and live.last_problems == []


@pytest.mark.parametrize("damage", ["delete", "empty", "truncate", "python-tag"])
def test_damaged_files_keep_the_last_good_set(tmp_path, damage):
    root = write_rules(tmp_path / "r", routing=ALPHA)
    live = LiveRules(root)
    good = live.current
    path = root / "queues.yaml"
    if damage == "delete":
        path.unlink()
    elif damage == "empty":
        path.write_text("")
    elif damage == "truncate":                      # a half-written save
        path.write_text(path.read_text()[:40])
    else:
        path.write_text("queues: !!python/object/apply:os.system ['echo pwned']\n")
    assert live.reload()
    assert live.current is good


def test_reload_can_update_known_templates(tmp_path):
    root = write_rules(tmp_path / "r", routing=rules_yaml("- {name: a, when: {subject: x}, then: {ack: t/vip}}"))
    live = LiveRules(root, known_templates={"t/vip"})
    problems = live.reload(known_templates={"t/ack"})            # the template was removed
    assert problems and "unknown template 't/vip'" in problems[0]
    assert live.reload(known_templates=None) == []


def test_defaults_are_checked_on_start_and_reload(tmp_path):
    root = write_rules(tmp_path / "r", routing=rules_yaml("- {name: a, when: {subject: x}, then: {type: change}}",
                                                          head=""))
    with pytest.raises(RulesError, match="problem"):
        LiveRules(root, defaults=Defaults(queue="nowhere"))
    assert LiveRules(root, defaults=Defaults()).current


def test_atomic_swap_under_load(tmp_path):
    """One thread reloads valid and invalid sets in a loop while others classify; every
    routing decision is consistent with exactly one version."""
    root = write_rules(tmp_path / "r", routing=ALPHA)
    expected = {load_rules(write_rules(tmp_path / "a", routing=ALPHA)).version: ("general", ("vip",), "to-general"),
                load_rules(write_rules(tmp_path / "b", routing=BETA)).version: ("network", ("outage",), "to-network")}
    live = LiveRules(root)
    stop = threading.Event()
    errors: list[str] = []
    seen: set[str] = set()
    reloads = {"ok": 0, "failed": 0}

    def reloader() -> None:
        texts = [BETA, BROKEN, ALPHA, BROKEN]
        for i in range(40):
            put(root, texts[i % len(texts)])
            reloads["failed" if live.reload() else "ok"] += 1
        stop.set()

    def classifier() -> None:
        m = msg(subject="x")
        while not stop.is_set():
            rs = live.current                       # read once: the whole message uses this set
            r = classify(m, NEW, rs, Defaults(), now=MONDAY_10)
            want = expected.get(r.rules_version)
            if want is None:
                errors.append(f"unknown version {r.rules_version}")
                continue
            seen.add(r.rules_version)
            queue, tags, rule = want
            if (r.queue, r.tags) != (queue, tags) or not r.hits[0].startswith(f"routing.yaml:11 {rule}:"):
                errors.append(f"mixed decision for {r.rules_version}: {r.queue} {r.tags} {r.hits}")

    threads = [threading.Thread(target=classifier) for _ in range(4)]
    for t in threads:
        t.start()
    swapper = threading.Thread(target=reloader)
    swapper.start()
    swapper.join()
    for t in threads:
        t.join()
    assert errors == []
    assert reloads == {"ok": 20, "failed": 20}
    assert seen == set(expected)                    # both versions were live at some point
    assert live.current.version in expected


def test_watch_reloads_once_a_change_has_settled(tmp_path):
    root = write_rules(tmp_path / "r", routing=ALPHA)
    live = LiveRules(root)
    stop = threading.Event()
    reloaded = threading.Event()
    results: list[list[str]] = []

    def on_reload(problems: list[str]) -> None:
        results.append(problems)
        reloaded.set()

    t = threading.Thread(target=watch, args=(live, stop, 0.02, on_reload))
    t.start()
    try:
        put(root, BROKEN)
        assert reloaded.wait(5)
        assert results[-1] and live.current.rules[0].name == "to-general"      # last good kept
        reloaded.clear()
        put(root, BETA)
        assert reloaded.wait(5)
        assert results[-1] == [] and live.current.rules[0].name == "to-network"
    finally:
        stop.set()
        t.join()


def test_watch_debounces_a_storm_of_touches(tmp_path):
    """Files touched every few milliseconds for 20 intervals: at most one reload per
    `max_wait` intervals during the storm, then one more when it settles."""
    root = write_rules(tmp_path / "r", routing=ALPHA)
    live = LiveRules(root)
    calls: list[int] = []
    settled = threading.Event()
    original = live.reload

    def counting_reload(**kw):
        calls.append(1)
        return original(**kw)
    live.reload = counting_reload                       # type: ignore[method-assign]
    stop = threading.Event()
    interval = 0.02
    t = threading.Thread(target=watch, args=(live, stop, interval, lambda p: settled.set()), kwargs={"max_wait": 5})
    t.start()
    try:
        i, started = 0, time.monotonic()
        storm_over = threading.Event()
        while not storm_over.wait(0.002):               # ~20 intervals of constant edits
            put(root, ALPHA + f"# edit {i}\n")
            i += 1
            if i >= 200:
                storm_over.set()
        during, elapsed = len(calls), time.monotonic() - started
        final = load_rules(root).version
        deadline = time.monotonic() + 5
        while live.current.version != final and time.monotonic() < deadline:
            settled.wait(0.05)                          # the final state is applied once it settles
            settled.clear()
    finally:
        stop.set()
        t.join()
    assert during <= elapsed / interval / 5 + 2, (during, elapsed)
    assert live.current.version == final
