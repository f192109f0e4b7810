"""One slow message does not hold up everyone's mail (issue 12, defect 2): with parse lanes
the worker stores the mail behind a message whose parse hangs once that one has been
parsing past `overtake_seconds` (0 here, so no test waits on time), while it is still in its
lane; it is then refused on its own (its parse process is killed, as the guard does at the
budget) and quarantined with the reason. Mail that parses normally keeps its spool order."""
from __future__ import annotations

import os
import signal
from functools import partial

import pytest

from daemon.app import build_app
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.model import Envelope
from daemon.parse_guard import ParseGuard
from daemon.settings import worker_settings
from daemon.worker import Worker
from tests.conftest import write_site_config

HANG = b"X-Test-Hang: yes"


def mail(tag: str, extra: bytes = b"") -> bytes:
    return (b"From: user-%s@example.org\r\nTo: support@example.com\r\nSubject: case %s\r\n"
            b"Message-ID: <%s@example.org>\r\n" % (tag.encode(), tag.encode(), tag.encode()) + extra +
            b"\r\nhelp\r\n")


@pytest.fixture
def lanes_app(tmp_path, request):
    cfg = load_config(str(write_site_config(tmp_path)))
    app = build_app(cfg, outbound=False)
    guard = ParseGuard(2, hang_marker=HANG)
    worker = Worker(app.spool, app.store, worker_settings(cfg), clock=app.clock,
                    parse=partial(guard.parse, seconds=60), lanes=2, overtake_seconds=getattr(request, "param", 0.0))
    yield app, worker, guard
    worker.close()
    guard.close()
    app.close()


def spool(app, raw: bytes) -> str:
    return app.spool.put(raw, Envelope("a@example.org", ("support@example.com",), "smtp"))


def test_mail_behind_a_hanging_parse_is_stored_while_it_hangs(lanes_app):
    app, worker, guard = lanes_app
    spool(app, mail("slow", HANG + b"\r\n"))
    spool(app, mail("fine-1"))
    spool(app, mail("fine-2"))
    stored = []
    while len(stored) < 2:                          # each call returns at least one result
        stored += [o for o in worker.run_batch() if o.kind == "stored"]
    assert sorted(o.result.message_id for o in stored) == ["fine-1@example.org", "fine-2@example.org"]
    assert worker.lanes.pending == 1 and len(guard.busy_pids()) == 1   # the slow one, still parsing
    os.kill(guard.busy_pids()[0], signal.SIGKILL)   # what the guard does at the budget
    rest = worker.run_batch()
    assert [(o.kind, o.reason) for o in rest] == [("quarantined", "parse_crashed")]
    assert worker.lanes.pending == 0 and app.spool.depth() == 0


@pytest.mark.parametrize("lanes_app", [600.0], indirect=True)       # never overtaken
def test_lanes_keep_the_spool_order_of_what_they_parse(lanes_app):
    app, worker, _ = lanes_app
    bases = [spool(app, mail(f"m{i}")) for i in range(6)]
    out = []
    while len(out) < 6:
        out += worker.run_batch()
    assert [o.base for o in out] == bases and {o.kind for o in out} == {"stored"}


def test_parse_processes_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="worker.parse_processes: must be 1 to 32"):
        load_config(str(write_site_config(tmp_path, "parse_processes = 0\n")))

