"""e2e fixtures: the real Dovecot of the integration suite, the relay sink, and a desk whose
agents sign their mail.

`sink` is a real aiosmtpd relay on loopback (tests.integration.test_outbox_relay.Sink): the
daemon's outbound relay, recording every mail it gets. `signed_desk(extra)` starts a real
`helpdesk serve` (site from tests.e2e.test_ack.site, sending to `sink`, plus the TOML
`extra`) whose `[agents] dkim_keys_file` pins the DKIM key of example.com, and returns
(config path, private key PEM to sign agents' and approvers' mail with, the Daemon); every
desk started is stopped afterwards.
"""
from __future__ import annotations

import signal

import pytest

from tests.agentkit import Zone
from tests.e2e.helpers import Daemon
from tests.e2e.test_ack import site
from tests.integration.conftest import dovecot, mailbox  # noqa: F401  (pytest fixtures)
from tests.integration.test_outbox_relay import Sink


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def signed_desk(tmp_path, sink):
    started: list[Daemon] = []

    def start(extra: str = ""):
        zone = Zone()
        pem = zone.publish("mail", "example.com")
        (tmp_path / "dkim-keys").write_text(zone.pinned_file())
        cfg = site(tmp_path, sink.port, '\n[agents]\ndkim_keys_file = "dkim-keys"\n' + extra)
        started.append(Daemon(cfg).start())
        return cfg, pem, started[-1]

    yield start
    for daemon in started:
        daemon.kill(signal.SIGTERM)
