"""daemon.clock: the time helpers, the clocks, the `[debug] clock_file` key, and that the
composition root hands one clock to every part that reads the time."""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.clock import (FileClock, ManualClock, SystemClock, as_utc, aware, build_clock, duration_text,
                          read_offset, stamp, utcnow, write_offset)
from daemon.config import load_config
from daemon.errors import ConfigError
from tests.conftest import write_site_config
from tests.e2e.helpers import advance

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


# ---------------------------------------------------------------------- helpers
def test_utcnow_is_aware_utc():
    assert utcnow().tzinfo is UTC and SystemClock().now().tzinfo is UTC and SystemClock()().tzinfo is UTC


def test_as_utc_takes_naive_as_utc_and_converts_aware():
    assert as_utc(datetime(2026, 3, 2, 9, 30)) == T0 and as_utc(datetime(2026, 3, 2, 9, 30)).tzinfo is UTC
    berlin = datetime(2026, 3, 2, 10, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert as_utc(berlin) == T0 and as_utc(berlin).tzinfo is UTC


def test_aware_keeps_none_and_aware_values():
    assert aware(None) is None
    assert aware(datetime(2026, 3, 2, 9, 30)) == T0
    berlin = datetime(2026, 3, 2, 10, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert aware(berlin) is berlin


def test_stamp():
    assert stamp(datetime(2026, 3, 2, 10, 30, 59, tzinfo=ZoneInfo("Europe/Berlin"))) == "2026-03-02 09:30 UTC"
    assert stamp(None) == ""


@pytest.mark.parametrize("seconds, text, minutes_text", [
    (None, "-", "-"), (0, "0m", "0m"), (30, "30s", "0m"), (31, "31s", "1m"), (-30, "30s", "0m"),
    (59.4, "59s", "1m"), (60, "1m", "1m"), (45 * 60, "45m", "45m"), (3600, "1h00m", "1h00m"),
    (3900, "1h05m", "1h05m"), (-3900, "1h05m", "1h05m"), (26 * 3600 + 60, "26h01m", "26h01m"),
])
def test_duration_text(seconds, text, minutes_text):
    d = None if seconds is None else timedelta(seconds=seconds)
    assert duration_text(d) == text                          # what escalation mails say
    assert duration_text(d, seconds=False) == minutes_text   # what reports say


# ---------------------------------------------------------------------- clocks
def test_manual_clock_stands_still_until_moved():
    clock = ManualClock(datetime(2026, 3, 2, 9, 30))
    assert clock() == clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90) == clock()
    clock.advance(timedelta(hours=-1))
    assert clock() == T0 + timedelta(seconds=90) - timedelta(hours=1)
    clock.set(T0)
    assert clock.now() == T0


def test_file_clock_without_file_is_the_wall_clock(tmp_path):
    clock = FileClock(tmp_path / "clock")
    assert clock.offset() == timedelta(0) and clock().tzinfo is UTC


@pytest.mark.parametrize("text, seconds", [("3600\n", 3600), ("-90.5", -90.5), ("  +7200 ", 7200), ("", 0),
                                           ("\n", 0)])
def test_file_clock_reads_seconds(tmp_path, text, seconds):
    path = tmp_path / "clock"
    path.write_text(text)
    assert FileClock(path).offset() == timedelta(seconds=seconds) == read_offset(path)


def test_an_iso_time_is_what_the_clock_read_when_the_file_was_written(tmp_path):
    path = tmp_path / "clock"
    path.write_text("2026-03-02T11:30:00+02:00\n")
    written = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    os.utime(path, ns=(int(written.timestamp() * 1e9),) * 2)
    assert FileClock(path).offset() == timedelta(days=1)
    path.write_text("2026-03-02T09:30:00")                     # naive: UTC
    os.utime(path, ns=(int(written.timestamp() * 1e9),) * 2)
    assert read_offset(path) == timedelta(days=1)


def test_moves_are_seen_and_the_file_is_read_only_when_it_changed(tmp_path, monkeypatch):
    path = tmp_path / "clock"
    clock = FileClock(path)
    reads = []
    real = read_offset
    monkeypatch.setattr("daemon.clock.read_offset", lambda p: reads.append(p) or real(p))
    for _ in range(1000):
        clock.now()
    assert clock.offset() == timedelta(0) and len(reads) == 1
    assert advance(path, 3600) == timedelta(hours=1)
    assert clock.offset() == timedelta(hours=1) and len(reads) == 2
    for _ in range(1000):
        clock()
    assert len(reads) == 2
    advance(path, timedelta(minutes=30))                       # same size, same mtime tick: new inode
    assert clock.offset() == timedelta(hours=1, minutes=30) and len(reads) == 3
    advance(path, -5400)
    assert clock.offset() == timedelta(0)
    path.unlink()
    assert clock.offset() == timedelta(0)


def test_write_offset_replaces_atomically(tmp_path):
    path = tmp_path / "clock"
    write_offset(path, 12.25)
    write_offset(path, timedelta(seconds=-3))
    assert read_offset(path) == timedelta(seconds=-3) and os.listdir(tmp_path) == ["clock"]


def test_a_bad_file_at_run_time_keeps_the_last_good_offset(tmp_path, caplog):
    path = tmp_path / "clock"
    write_offset(path, 60)
    clock = FileClock(path)
    assert clock.offset() == timedelta(seconds=60)
    path.write_text("next tuesday")
    with caplog.at_level(logging.WARNING, logger="daemon.clock"):
        assert clock.offset() == timedelta(seconds=60)
        assert clock.offset() == timedelta(seconds=60)
    assert caplog.text.count("neither seconds nor an ISO time: 'next tuesday'") == 1
    path.write_text("1e400")
    with pytest.raises(ValueError, match="out of range"):
        read_offset(path)
    assert clock.offset() == timedelta(seconds=60)


def test_readers_in_many_threads_agree(tmp_path):
    path = tmp_path / "clock"
    write_offset(path, 600)
    clock, seen = FileClock(path), []
    threads = [threading.Thread(target=lambda: seen.extend(clock.offset() for _ in range(200))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {timedelta(seconds=600)} and len(seen) == 800


# ---------------------------------------------------------------------- config
def test_default_is_the_wall_clock(tmp_path):
    cfg = load_config(str(write_site_config(tmp_path)))
    assert cfg.debug.clock_file == "" and isinstance(build_clock(cfg), SystemClock)


def test_clock_file_is_relative_to_the_site_file_and_logged(tmp_path, caplog):
    cfg = load_config(str(write_site_config(tmp_path, '[debug]\nclock_file = "var/clock"\n')))
    assert cfg.debug.clock_file == str((tmp_path / "var" / "clock").resolve())
    with caplog.at_level(logging.WARNING, logger="daemon.clock"):
        clock = build_clock(cfg)                               # no file yet: offset 0
    assert isinstance(clock, FileClock) and clock.path == Path(cfg.debug.clock_file)
    assert "TEST CLOCK" in caplog.text and cfg.debug.clock_file in caplog.text


def test_unknown_debug_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"debug\.clock: unknown key"):
        load_config(str(write_site_config(tmp_path, '[debug]\nclock = "x"\n')))
    with pytest.raises(ConfigError, match=r"debug\.clock_file: expected str"):
        load_config(str(write_site_config(tmp_path, '[debug]\nclock_file = 5\n')))


def test_a_bad_clock_file_refuses_start_naming_the_key(tmp_path):
    (tmp_path / "clock").write_text("soon")
    cfg = load_config(str(write_site_config(tmp_path, '[debug]\nclock_file = "clock"\n')))
    with pytest.raises(ConfigError, match=r"site\.toml: debug\.clock_file: .*clock: neither seconds"):
        build_clock(cfg)


# ---------------------------------------------------------------------- one clock for the process
def test_the_composition_root_hands_one_clock_to_everything(tmp_path):
    from daemon.app import build_app
    from daemon.tasks import huey
    cfg = load_config(str(write_site_config(tmp_path, '[queue]\nbackend = "immediate"\n'
                                                      '[debug]\nclock_file = "clock"\n')))
    app = build_app(cfg)
    try:
        clock = app.worker.clock
        assert isinstance(clock, FileClock)
        outbound = app.worker.mail
        assert outbound.clock is clock and huey.delivery().clock is clock
        assert app.mail.agents.clock is clock and outbound.sla.clock is clock
        advance(tmp_path / "clock", 7200)
        assert outbound.sla.clock() - utcnow() > timedelta(hours=1, minutes=59)
    finally:
        app.store.engine.dispose()


def test_the_queue_worker_hands_its_clock_to_the_sla_side(tmp_path):
    """`helpdesk worker` is built by the same composition root (daemon.app.build_app)."""
    from daemon.app import build_app
    from daemon.tasks import huey
    cfg = load_config(str(write_site_config(tmp_path, '[debug]\nclock_file = "clock"\n')))
    app = build_app(cfg)
    try:
        clock = app.clock
        assert isinstance(clock, FileClock)
        assert huey.sla.clock is clock
    finally:
        app.close()
