"""OAuth 2.0 under IDLE for one account, against a real Dovecot (oauth2 passdb) and the
stand-in token/introspection endpoint of the tests (run by hand).

    .venv/bin/python bench/oauth2.py [--hours 24] [--expires-in 3600] [--kicks 5]

Prints (1) token requests a day for one account idling all day: from the refresh policy
(daemon.oauth2.refresh_at) for the lifetimes Google and Microsoft hand out, and counted
by running a poller through `--hours` of simulated time (a settable clock; the poller and
Dovecot are real, every refresh is a real token request and a real re-login); (2) the time
from a token falling due to the next mail being in the spool (renewal ahead of expiry:
leave IDLE, refresh, log in again, scan), and (3) the time from the provider revoking the
token and cutting the session to the next mail being in the spool (reconnect backoff,
refused token, refresh, log in). Production settings: reconnect backoff 1 s, IDLE tick 1 s
(`--tick`: the clock here jumps to the due time, so up to one tick passes before the poller
notices; with a real clock renewal starts 5 minutes before expiry and mail keeps being
pushed by IDLE until then, so only the re-login itself is a gap in intake).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import ImapAccount  # noqa: E402
from daemon.intake.imap import ImapPoller, imap_tokens  # noqa: E402
from daemon.oauth2 import refreshes_per_day  # noqa: E402
from daemon.spool import Spool  # noqa: E402
from store import imap_state  # noqa: E402
from store.db import make_engine  # noqa: E402
from tests.integration.dovecot import Dovecot, find_binary  # noqa: E402
from tests.integration.oauth_server import AuthServer, Clock, dovecot_oauth2_conf  # noqa: E402


def mail(tag: str) -> bytes:
    return (f"From: u@example.org\r\nTo: support@example.com\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}-{time.time_ns()}@example.org>\r\n\r\nhelp\r\n").encode()


def wait(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.002)


class Run:
    """One poller (production timing) on an OAuth account, its spool and its clock."""

    def __init__(self, server: Dovecot, auth: AuthServer, work: Path, tick: float):
        self.server, self.auth, self.clock = server, auth, Clock()
        self.user = server.add_user()
        acct = ImapAccount(name="bench", host="127.0.0.1", port=server.port, security="none", username=self.user,
                           password_env="", password_credential="", folder="INBOX", move_to="", idle=True,
                           poll_seconds=60, verify_tls=True, ca_file="", auth="oauth2",
                           oauth2_token_url=auth.token_url, oauth2_client_id="helpdesk",
                           oauth2_client_secret_env="S", oauth2_refresh_token_env="RT")
        env = {"S": "client-secret", "RT": auth.issue_refresh_token(self.user)}
        engine = make_engine(f"sqlite:///{work / 'state.db'}")
        imap_state.create_tables(engine)
        self.spool = Spool(work / "spool").ensure()
        self.stored = threading.Event()
        self.poller = ImapPoller(acct, self.spool, engine, lambda _b: self.stored.set(), threading.Event(), "bench",
                                 environ=env, tokens=imap_tokens(work / "state", acct, environ=env, clock=self.clock),
                                 tick=tick)
        self.thread = self.poller.start()
        self.idle()

    def idle(self) -> None:
        wait(lambda: self.poller.status().state == "idle")

    def time_to_intake(self, disturb) -> float:
        """Seconds from `disturb()` (+ an APPEND right after it) to that mail in the spool."""
        self.stored.clear()
        t0 = time.perf_counter()
        disturb()
        c = self.server.client(self.user)
        c.append("INBOX", mail("bench"))
        self.stored.wait(60)
        elapsed = time.perf_counter() - t0
        c.logout()
        while (claim := self.spool.claim()) is not None:
            self.spool.done(claim)
        self.idle()
        return elapsed

    def stop(self) -> None:
        self.poller.stop.set()
        self.thread.join(15)


def simulate_day(run: Run, hours: float, step: float = 60.0) -> tuple[int, int]:
    """Advance the clock through `hours` in `step`s; each time a token falls due, let the
    poller renew it for real. Returns (token requests, logins) in that time."""
    grants0, logins0 = len(run.auth.grants), run.poller.status().logins
    for _ in range(int(hours * 3600 / step)):
        run.clock.advance(step)
        if run.poller.tokens.due():
            logins = run.poller.status().logins
            wait(lambda: run.poller.status().logins > logins)
            run.idle()
    return len(run.auth.grants) - grants0, run.poller.status().logins - logins0


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {xs[-1] * 1000:.0f} ms ({len(xs)} runs)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--expires-in", type=int, default=3600)
    ap.add_argument("--kicks", type=int, default=5)
    ap.add_argument("--tick", type=float, default=1.0, help="the poller's IDLE tick (production: 1 s)")
    args = ap.parse_args()
    binary = find_binary("dovecot")
    if binary is None:
        print("dovecot not installed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 1
    print("token requests a day for one account under IDLE, from the refresh policy:")
    for label, life in (("Google (3599 s)", 3599), ("Microsoft 365 (60 min)", 3600), ("Microsoft 365 (90 min)", 5400)):
        print(f"  {label:<28} expires_in {life:>5} s: {refreshes_per_day(life):.1f}")
    auth = AuthServer(expires_in=args.expires_in).start()
    ext = Path(tempfile.mkdtemp(prefix="hd-oauth2-bench-"))
    os.chmod(ext, 0o755)
    server = Dovecot.create(binary, dovecot_oauth2_conf(ext, auth) + "auth_failure_delay = 0\n", auth_penalty=False)
    work = Path(tempfile.mkdtemp(prefix="hd-bench-oauth2-"))
    try:
        server.start()
        run = Run(server, auth, work, args.tick)
        grants, logins = simulate_day(run, args.hours)
        print(f"counted over {args.hours:g} h of simulated time (expires_in {args.expires_in} s): "
              f"{grants} token requests, {logins} re-logins -> {grants * 24 / args.hours:.1f} a day")
        ahead = [run.time_to_intake(lambda: run.clock.advance(run.poller.tokens._token.refresh_at - run.clock()))
                 for _ in range(args.kicks)]
        print(f"token due -> next mail in the spool (renewed ahead of expiry): {summary(ahead)}")

        def revoke_and_kick():
            auth.expire_all()
            server.doveadm("kick", run.user)
        cut = [run.time_to_intake(revoke_and_kick) for _ in range(args.kicks)]
        print(f"token revoked + session cut -> next mail in the spool: {summary(cut)}")
        run.stop()
    finally:
        server.remove()
        auth.stop()
        shutil.rmtree(ext, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
