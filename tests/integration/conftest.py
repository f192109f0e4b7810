"""Fixtures for edge tests against real servers: a Dovecot IMAP server on loopback.

`dovecot` is one server for the session; tests isolate themselves with `mailbox` (a fresh
user with an empty Maildir). Tests that stop, kill or reconfigure the server use
`dovecot_factory` for a private instance. Without dovecot installed: skip, or fail when
CI=true.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import missing
from tests.integration.dovecot import Dovecot, find_binary


def _dovecot_binary() -> str:
    binary = find_binary("dovecot")
    if binary is None:
        missing("dovecot not installed (apt-get install dovecot-imapd)")
    return binary


@pytest.fixture(scope="session")
def dovecot():
    server = Dovecot.create(_dovecot_binary())
    server.start()
    yield server
    server.remove()


@pytest.fixture
def dovecot_factory():
    """Make private Dovecot instances (`extra` config appended); all removed afterwards."""
    binary = _dovecot_binary()
    made: list[Dovecot] = []

    def make(extra: str = "", *, start: bool = True, **conf) -> Dovecot:
        server = Dovecot.create(binary, extra, **conf)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.remove()


@dataclass
class Mailbox:
    """A fresh user on a running Dovecot."""

    server: Dovecot
    user: str
    password: str

    def client(self):
        return self.server.client(self.user, self.password)


@pytest.fixture
def mailbox(dovecot) -> Mailbox:
    return Mailbox(dovecot, dovecot.add_user(), "secret")
