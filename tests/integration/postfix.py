"""A real Postfix on loopback with its own config and queue directory, for the MTA tests.

`Postfix(d, ...)` writes `d/main.cf` and `d/master.cf` (nothing under /etc/postfix is read
or touched): smtpd on a free loopback port, a `transport_maps` inline table routing
recipients to our LMTP socket or to a `pipe` transport running `helpdesk ingest`, the
mail log in `d/maillog` (postlogd), fast retries. `start()` runs `postfix -c d start` and
waits for the port; `flush()` is `postqueue -c d -f`; `queue()` reads `postqueue -j`;
`stop()` is `postfix -c d stop`, then `abort` for stragglers. Postfix's master must run
as root (Debian's `postfix` mail_owner and `postdrop` setgid group, made by the package);
the pipe transport runs its command as `pipe_user` (Postfix refuses root there).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.dovecot import find_binary

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
lmtp      unix  -       -       n       -       -       lmtp
postlog   unix-dgram n  -       n       -       1       postlogd
helpdesk  unix  -       n       n       -       -       pipe
  flags=q user={pipe_user} null_sender= argv={argv}
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.helpdesk.test
mydomain = helpdesk.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domains}
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = inline:{{ {transports} }}
alias_maps =
alias_database =
local_recipient_maps =
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
smtputf8_enable = no
biff = no
helpdesk_destination_recipient_limit = 1
minimal_backoff_time = 60s
maximal_backoff_time = 120s
queue_run_delay = 60s
lmtp_connect_timeout = 5s
"""


def postfix_binaries() -> tuple[str, str] | None:
    postfix, postqueue = find_binary("postfix"), find_binary("postqueue")
    return (postfix, postqueue) if postfix and postqueue else None


class Postfix:
    """One Postfix instance in `d` (see module docstring)."""

    def __init__(self, d: Path, port: int, transports: dict[str, str], pipe_argv: str, pipe_user: str = "nobody"):
        self.d, self.port = Path(d), port
        self.postfix, self.postqueue = postfix_binaries()
        domains = sorted({k.rpartition("@")[2] for k in transports})
        (self.d / "queue").mkdir(parents=True, exist_ok=True)
        (self.d / "main.cf").write_text(MAIN_CF.format(
            d=self.d, domains=" ".join(domains),
            transports=", ".join(f"{k}={v}" for k, v in transports.items())))
        (self.d / "master.cf").write_text(MASTER_CF.format(port=port, pipe_user=pipe_user, argv=pipe_argv))
        self.log = self.d / "maillog"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, capture_output=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        return proc

    def start(self, timeout: float = 60) -> "Postfix":
        self._run(self.postfix, "-c", str(self.d), "check")        # creates the queue's subdirectories
        self._run(self.postfix, "-c", str(self.d), "start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("postfix did not start: " + self.log_text()[-3000:])

    def stop(self) -> None:
        if self._run(self.postfix, "-c", str(self.d), "stop", check=False).returncode != 0:
            self._run(self.postfix, "-c", str(self.d), "abort", check=False)
        pid_file = self.d / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                os.kill(int(pid_file.read_text().split()[0]), 0)
            except (ProcessLookupError, ValueError, FileNotFoundError):
                break
            time.sleep(0.1)

    def flush(self) -> None:
        """Deliver every queued (deferred) message now."""
        self._run(self.postqueue, "-c", str(self.d), "-f")

    def queue(self) -> list[dict]:
        """The queue as `postqueue -j` lists it: one dict per message."""
        out = self._run(self.postqueue, "-c", str(self.d), "-j").stdout.decode()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def deliveries(self) -> list[tuple[str, str, str, str]]:
        """(queue id, recipient, relay, status) of every delivery attempt in the mail log."""
        return re.findall(r"postfix/(?:lmtp|pipe)\[\d+\]: (\w+): to=<([^>]*)>, relay=([^,]+),.*? status=(\w+)",
                          self.log_text())
