"""Shared fixtures: corpus location, site configs in temp dirs, real servers.

A test whose server is missing skips with the reason on a user's machine and fails
under CI=true (in CI everything runs).
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("HELPDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HELPDESK_TEST_REDIS", "redis://127.0.0.1:6379/15")


def missing(reason: str) -> None:
    """Skip with a reason, or fail when CI=true."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        missing(f"shared corpus not found at {CORPUS}")
    return CORPUS


def write_site_config(tmp: Path, extra: str = "", *, db_url: str = "") -> Path:
    """A site config in `tmp` with its own state dir and a free SMTP port."""
    path = tmp / "site.toml"
    path.write_text(f"""
[helpdesk]
address = "support@example.com"
state_dir = "state"

[database]
url = "{db_url}"

[smtp]
port = {free_port()}
domains = ["example.com", "helpdesk.test"]

[worker]
retry_seconds = 0
idle_poll_seconds = 0.2
{extra}
""")
    return path


@pytest.fixture
def site_config(tmp_path: Path) -> Path:
    return write_site_config(tmp_path)


@pytest.fixture
def config(site_config: Path):
    from daemon.config import load_config
    return load_config(str(site_config))


@pytest.fixture
def app(config):
    from daemon.app import build_app
    a = build_app(config)
    yield a
    a.close()


@pytest.fixture(scope="session")
def pg_admin():
    """An engine on the local PostgreSQL, or skip/fail."""
    try:
        from sqlalchemy import create_engine, text
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import text
    name = f"hd_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with pg_admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
