"""A real Dovecot IMAP server in a temp dir, for the IMAP intake tests and the bench.

The recipe of ../shared/servers-for-tests.md in Python: `make_dovecot_conf` writes
`dovecot.conf` and a passwd-file; `Dovecot` starts the master in its own session
(`start_new_session=True`) and stops it by signalling the whole process group, because
the master alone leaves logged-in imap processes serving. Works as root (Debian's
`dovecot`/`dovenull` users, login chroot kept) and rootless. Nothing touches
/etc/dovecot. Users can be added while the server runs (passwd-file is re-read).
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from tests.conftest import free_port

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
ROOTLESS_SERVICES = ("anvil", "ipc", "old-stats", "imap-urlauth-login")
POOL_PREFIX, POOL_SIZE = "user", 200


def find_binary(name: str) -> str | None:
    """`name` on PATH, else in the sbin directories a normal user's PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None




def _services(rootless: bool, auth_penalty: bool) -> str:
    """Service overrides: no chroots when rootless; optionally no auth penalty (anvil's
    penalty socket made unconnectable), so a test can count a client's own login pacing."""
    blocks = []
    for name in ROOTLESS_SERVICES:
        body = ["  chroot ="] if rootless else []
        if name == "anvil" and not auth_penalty:
            body.append("  unix_listener anvil-auth-penalty {\n    mode = 0\n  }")
        if body:
            blocks.append(f"service {name} {{\n" + "\n".join(body) + "\n}")
    return "\n".join(blocks)


def make_dovecot_conf(d: Path, port: int, extra: str = "", *, imaps_port: int = 0,
                      auth_penalty: bool = True) -> Path:
    """Write `d/dovecot.conf` and `d/users` (agent@example.test:secret) for a loopback server.

    `extra` is appended verbatim (e.g. `imap_capability = ...`, ssl settings)."""
    for sub in ("run", "state", "mail"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        login_user, internal_user, internal_group, mail_user = "dovenull", "dovecot", "dovecot", "dovecot"
        login_chroot = "login"
    else:
        me, my_group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        login_user = internal_user = mail_user = me
        internal_group = my_group
        login_chroot = ""
    services = _services(os.getuid() != 0, auth_penalty)
    mail_uid, mail_gid = pwd.getpwnam(mail_user).pw_uid, pwd.getpwnam(mail_user).pw_gid
    os.chown(d / "mail", mail_uid, mail_gid)
    # a pool of spare users: Dovecot re-reads a changed passwd-file at most once a second,
    # so users added while it runs may be refused for a moment
    spare = "".join(f"{POOL_PREFIX}{n:03d}@example.test:{{PLAIN}}secret\n" for n in range(POOL_SIZE))
    (d / "users").write_text("agent@example.test:{PLAIN}secret\nother@example.test:{PLAIN}secret2\n" + spare)
    conf = d / "dovecot.conf"
    conf.write_text(f"""protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = hd-test-{port}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:{d}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={d}/mail/%u
}}
service imap-login {{
  chroot = {login_chroot}
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
{services}
{extra}
""")
    return conf


class Dovecot:
    """One Dovecot instance: its directory, port and master process."""

    def __init__(self, d: Path, port: int, binary: str, imaps_port: int = 0):
        self.dir, self.port, self.binary, self.proc = Path(d), port, binary, None
        self.imaps_port = imaps_port
        self._next_user = 0
        self.conf = self.dir / "dovecot.conf"

    @classmethod
    def create(cls, binary: str, extra: str = "", **conf) -> "Dovecot":
        # not pytest's tmp_path: its pytest-of-<user> base is 0700, and as root dovecot's
        # auth and mail processes run as 'dovecot' and must traverse every parent dir
        d = Path(tempfile.mkdtemp(prefix="hd-dovecot-"))
        os.chmod(d, 0o755)
        port = free_port()
        make_dovecot_conf(d, port, extra, **conf)
        return cls(d, port, binary, conf.get("imaps_port", 0))

    def start(self, timeout: float = 10.0) -> None:
        with open(self.dir / "dovecot.stdout", "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf), "-F"], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited early with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("dovecot did not open its port")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group (SIGKILL = crash), reap the master, kill stragglers."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_user(self) -> str:
        """A fresh user (password `secret`) with an empty mailbox, from the spare pool."""
        if self._next_user >= POOL_SIZE:
            raise RuntimeError("spare Dovecot users exhausted; raise POOL_SIZE")
        self._next_user += 1
        return f"{POOL_PREFIX}{self._next_user - 1:03d}@example.test"

    def client(self, user: str = "agent@example.test", password: str = "secret") -> IMAPClient:
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        c.login(user, password)
        return c

    def doveadm(self, *args: str) -> subprocess.CompletedProcess:
        doveadm = find_binary("doveadm") or "doveadm"
        return subprocess.run([doveadm, "-c", str(self.conf), *args], check=True,
                              capture_output=True, text=True, timeout=30)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.dir / "dovecot.log").read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def log_count(self, needle: str) -> int:
        try:
            return (self.dir / "dovecot.log").read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0
