"""Shared fixtures: corpus location, site configs in temp dirs, real servers.

A test whose server is missing skips with the reason on a user's machine and fails
under CI=true (in CI everything runs).
"""
from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("HELPDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Each pytest-xdist worker (gw0, gw1, ...) gets its own Redis database, counting down from 15,
# so one worker's flush never empties another's queue.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
REDIS_URL = os.environ.get("HELPDESK_TEST_REDIS",
                           f"redis://127.0.0.1:6379/{15 - int(_XDIST_WORKER.removeprefix('gw') or 0) % 15}")
# The signing key every node of a shared (PostgreSQL) database must have (issue 14): site
# configs on PostgreSQL name it, and every process a test starts inherits it.
TEST_KEY_ENV = "HELPDESK_TEST_SIGNING_KEY"
os.environ.setdefault(TEST_KEY_ENV, "1 " + "dGVzdC1zaWduaW5nLWtleS1vZi10aGUtdGVzdHMtMTQ=")


def missing(reason: str) -> None:
    """Skip with a reason, or fail when CI=true."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def port_range_for_tests() -> range:
    """Ports for tests: below the kernel's ephemeral range (ip_local_port_range), so no
    outgoing connection and no `bind(0)` anywhere on the machine is given one of them."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low >= 22_000:
        return range(20_000, min(low, 32_000))
    return range(high + 1, 65_536)


PORTS = port_range_for_tests()
PORT_LOCKS = Path(tempfile.gettempdir()) / "helpdeskd-test-ports"
_held: dict[int, int] = {}              # port -> fd of its lock file, held while this process lives


def free_port(*, ports: range | None = None) -> int:
    """A loopback TCP port no other caller on this machine gets while this process lives.

    Each port of `ports` (default PORTS, outside the ephemeral range) has a lock file under
    the temp dir; the port is ours once we hold its exclusive `flock` (released by the
    kernel when this process ends, even on SIGKILL) and a bind shows nothing listens on it.
    Two tests, two pytest runs or two engineers' runs at once never get the same port."""
    ports = PORTS if ports is None else ports
    PORT_LOCKS.mkdir(mode=0o777, exist_ok=True)
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port in _held:
            continue
        fd = os.open(PORT_LOCKS / f"{port}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue                # another process holds it
            raise
        if _bindable(port):
            _held[port] = fd
            return port
        os.close(fd)                    # something outside the scheme listens there: skip it
    raise RuntimeError(f"no free test port in {ports.start}-{ports.stop - 1} (all locked or in use)")


def release_port(port: int) -> None:
    """Give a port from free_port back before this process ends (rarely needed)."""
    fd = _held.pop(port, None)
    if fd is not None:
        os.close(fd)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        missing(f"shared corpus not found at {CORPUS}")
    return CORPUS


def sla_yaml(standard: dict[str, tuple[str, str]] | tuple[str, str], critical: tuple[str, str], *,
             escalations: str = "") -> str:
    """An sla.yaml for tests: one always-open calendar and the two policies the shipped
    services name, `standard` (the default) and `business-critical`, with (first_response,
    resolution) per priority P1..P4 (or one pair for all of them). `escalations`: the YAML
    list of an escalation set `quick` that `standard` uses (none when empty)."""
    def targets(given) -> str:
        per = given if isinstance(given, dict) else {p: given for p in ("P1", "P2", "P3", "P4")}
        return "".join(f"      {p}: {{first_response: {fr}, resolution: {res}}}\n" for p, (fr, res) in per.items())
    quick = f"escalations:\n  quick:\n{escalations}" if escalations else ""
    return (f"calendars:\n  always:\n    always_open: true\n{quick}policies:\n  standard:\n    calendar: always\n"
            + ("    escalations: quick\n" if escalations else "") + "    targets:\n" + targets(standard)
            + "  business-critical:\n    calendar: always\n    targets:\n" + targets(critical)
            + "default_policy: standard\n")


def write_site_config(tmp: Path, extra: str = "", *, db_url: str = "") -> Path:
    """A site config in `tmp` with its own state dir and a free SMTP port."""
    path = tmp / "site.toml"
    key = f'key_env = "{TEST_KEY_ENV}"' if db_url.startswith("postgresql") and "key_" not in extra else ""
    path.write_text(f"""
[helpdesk]
address = "support@example.com"
state_dir = "state"
{key}

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


@dataclass(frozen=True)
class Backend:
    """A database for one storage-contract test: `name` (sqlite | postgresql), `url` (a
    concrete URL: a file in the test's tmp dir, or a fresh PostgreSQL database) and
    `config_url` (what a site config's [database] url gets: "" for the default SQLite file
    in the state dir, else the PostgreSQL URL)."""

    name: str
    url: str
    config_url: str


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    """The one backend fixture of the SQLite/PostgreSQL contract tests: each test using it
    (directly or through a fixture built on it) runs once per backend."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        return Backend("postgresql", url, url)
    return Backend("sqlite", f"sqlite:///{tmp_path / 'hd.db'}", "")


def _fresh_pg_database(pg_admin):
    """A new, empty PostgreSQL database; its URL is yielded, and it is dropped afterwards."""
    from sqlalchemy import text
    name = f"hd_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with pg_admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_admin):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from _fresh_pg_database(pg_admin)


@pytest.fixture
def second_pg_url(pg_admin):
    """Another fresh PostgreSQL database for the same test (e.g. export from one, import into
    the other)."""
    yield from _fresh_pg_database(pg_admin)
