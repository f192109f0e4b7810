"""IMAP intake edge: one `ImapPoller` per [[imap]] account, each in its own thread.

A session: take the (account, folder) lease → connect (implicit TLS with certificate
verification, STARTTLS, or plain on loopback only) → LOGIN → SELECT → finish any
\\Seen/MOVE still owed from a crash → scan → IDLE (or sleep `poll_seconds`) → scan ...

A scan finds new mail by UID above the stored cursor, oldest first, in batches of
`batch_size`: FETCH RFC822.SIZE, then BODY.PEEK[] for at most `batch_size` messages or
`batch_bytes` at a time (never FETCH RFC822, which sets \\Seen). Each chunk is committed to
the spool (fsync + rename: the commit point), logged in store/imap_state with the sha256 of
the raw bytes and the cursor moved, `on_stored(base)` called, and only then flagged \\Seen or
moved to `move_to`. A message the state already knows (same UIDVALIDITY/UID, or same
sha256) is only flagged or moved, never spooled twice. First contact with a folder takes
its UNSEEN messages; after a UIDVALIDITY change (or a recreated folder) the old cursor is
dropped and UNSEEN mail plus everything that arrived since our last take is re-examined.

Connection errors back off exponentially with jitter up to `backoff_cap`, one log line per
step; a refused LOGIN waits `auth_backoff` (minutes) and logs an ALERT; a failed spool
commit leaves the messages untouched for the next attempt. `status()` is for `helpdesk status`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from daemon.config import ImapAccount
from daemon.errors import ConfigError, SpoolError, StoreUnavailable
from daemon.model import Envelope
from daemon.spool import Spool
from store import imap_state
from store.imap_state import FolderState, Taken

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
SEEN, DELETED = b"\\Seen", b"\\Deleted"
SEARCH_WINDOW = 10_000          # UIDs per SEARCH, so no response line nears imaplib's 1 MB cap
HEADER_END = re.compile(rb"\r?\n\r?\n")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", re.I | re.M)
RECONNECT = (OSError, IMAPClient.Error, StoreUnavailable, SpoolError, SQLAlchemyError)


class ServerGone(ConnectionError):
    """The server said BYE (or closed the socket) while we were idling."""


class LeaseLost(Exception):
    """Another poller holds the (account, folder) lease now; stop importing."""


@dataclass(frozen=True)
class PollerStatus:
    """A snapshot of one poller for `helpdesk status`. `state` is one of: starting,
    connecting, polling, idle, backoff, auth_failed, standby (another daemon holds the
    lease), stopped. Times are ISO 8601 UTC."""

    account: str
    folder: str
    state: str = "starting"
    taken: int = 0                    # messages this poller committed to the spool
    last_mail_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    retry_at: str | None = None
    connects: int = 0
    logins: int = 0
    batches: int = 0
    idles: int = 0


# ----------------------------------------------------------------- pure helpers
def backoff_delay(attempt: int, base: float, cap: float, rand: float) -> float:
    """Capped exponential backoff with equal jitter: in [d/2, d], d = min(cap, base*2^(n-1))."""
    d = min(cap, base * 2 ** min(max(attempt, 1) - 1, 40))
    return d * (0.5 + rand / 2)


def message_id_of(raw: bytes) -> str:
    """The Message-ID header value (unfolded), "" when absent. Looks at the header only."""
    head = HEADER_END.split(raw[:262_144], 1)[0]
    m = MESSAGE_ID.search(head)
    return " ".join(m.group(1).decode("latin-1").split()) if m else ""


def plan_windows(last: int, until: int, uidnext: int, width: int = SEARCH_WINDOW
                 ) -> list[tuple[int, int | None, bool]]:
    """UID ranges to SEARCH, oldest first: (lo, hi or None for `*`, in resync scope?).
    UIDs up to `until` belong to a first sync/resync; the rest are plain new mail."""
    out, lo = [], last + 1
    for end, scoped in ((until, True), (uidnext - 1, False)):
        while lo <= end:
            hi = min(lo + width - 1, end)
            out.append((lo, hi, scoped))
            lo = hi + 1
    out.append((lo, None, False))
    return out


def plan_chunks(uids: list[int], sizes: Mapping[int, int], max_count: int, max_bytes: int) -> list[list[int]]:
    """Split UIDs into FETCH chunks of at most `max_count` messages and `max_bytes` (a
    single larger message gets a chunk of its own), keeping their order."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if current and (len(current) >= max_count or total + size > max_bytes):
            chunks.append(current)
            current, total = [], 0
        current.append(uid)
        total += size
    if current:
        chunks.append(current)
    return chunks


def read_password(account: ImapAccount, environ: Mapping[str, str], credentials_dir: str | None) -> str:
    """The password from `password_env`, else from the systemd credential file."""
    if account.password_env and environ.get(account.password_env):
        return environ[account.password_env]
    name = account.password_credential
    if name:
        if "/" in name or name in (".", ".."):
            raise ConfigError(f"imap {account.name}: password_credential: not a plain name: {name!r}")
        base = credentials_dir or environ.get("CREDENTIALS_DIRECTORY")
        if base:
            try:
                return (Path(base) / name).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"imap {account.name}: credential {name}: {exc.strerror}") from None
    raise ConfigError(f"imap {account.name}: no password: set ${account.password_env or '<password_env>'}"
                      f" or the systemd credential {name or '<password_credential>'}")


def tls_context(account: ImapAccount) -> ssl.SSLContext:
    """Certificate and host name verification on, unless verify_tls = false."""
    ctx = ssl.create_default_context(cafile=account.ca_file or None)
    if not account.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:300]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------- the poller
class ImapPoller:
    """Takes mail from one [[imap]] account's folder into the spool (see module docstring)."""

    def __init__(self, account: ImapAccount, spool: Spool, engine: Engine,
                 on_stored: Callable[[str], None] | None, stop: threading.Event, owner_id: str, *,
                 environ: Mapping[str, str] | None = None, credentials_dir: str | None = None,
                 batch_size: int = 50, batch_bytes: int = 32 << 20, search_window: int = SEARCH_WINDOW,
                 idle_reissue: float = 29 * 60.0,
                 tick: float = 1.0, backoff_base: float = 1.0, backoff_cap: float = 300.0,
                 auth_backoff: float = 300.0, auth_backoff_cap: float = 3600.0, lease_ttl: float = 90.0,
                 timeout: SocketTimeout = SocketTimeout(connect=30.0, read=120.0),
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        if account.security not in ("tls", "starttls", "none"):
            raise ConfigError(f"imap {account.name}: security must be tls, starttls or none")
        if account.security == "none" and account.host not in LOOPBACK:
            raise ConfigError(f"imap {account.name}: security 'none' is refused unless host is loopback")
        self.account, self.spool, self.engine = account, spool, engine
        self.on_stored, self.stop, self.owner_id = on_stored, stop, owner_id
        self.environ = os.environ if environ is None else environ
        self.credentials_dir = credentials_dir
        self.batch_size, self.batch_bytes, self.search_window = batch_size, batch_bytes, search_window
        self.idle_reissue, self.tick = idle_reissue, tick
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.auth_backoff, self.auth_backoff_cap = auth_backoff, auth_backoff_cap
        self.lease_ttl, self.timeout = lease_ttl, timeout
        self.clock, self.monotonic, self.rand = clock, monotonic, rand
        self._lock = threading.Lock()
        self._status = PollerStatus(account.name, account.folder)
        self._caps: frozenset[bytes] = frozenset()
        self._failures = self._auth_failures = 0
        self._lease_renew_at = 0.0
        self._standing_by = False
        self._warned: set[str] = set()
        if not account.verify_tls and account.security != "none":
            log.warning("imap %s: TLS certificate verification is OFF (verify_tls = false)", account.name)

    # ------------------------------------------------------------- public
    def status(self) -> PollerStatus:
        with self._lock:
            return self._status

    def start(self) -> threading.Thread:
        """Run in a daemon thread named imap-<account>; returns the thread."""
        t = threading.Thread(target=self.run, name=f"imap-{self.account.name}", daemon=True)
        t.start()
        return t

    def run(self) -> None:
        """Poll until `stop` is set. Never raises: every failure is logged and retried."""
        a = self.account
        log.info("imap %s: polling %s@%s:%d folder %s (security %s)", a.name, a.username, a.host,
                 a.port, a.folder, a.security)
        try:
            while not self.stop.is_set():
                if self._take_lease():
                    self._attempt()
        finally:
            self._release_lease()
            self._set(state="stopped")
            log.info("imap %s: stopped", a.name)

    # ------------------------------------------------------------- status plumbing
    def _set(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._status = replace(self._status, **{name: getattr(self._status, name) + n})

    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    # ------------------------------------------------------------- lease
    def _take_lease(self) -> bool:
        a = self.account
        try:
            now = self.clock()
            if imap_state.acquire_lease(self.engine, a.name, a.folder, self.owner_id, self.lease_ttl, now):
                self._lease_renew_at = now + self.lease_ttl / 3
                if self._standing_by:
                    log.info("imap %s: took over the lease on %s", a.name, a.folder)
                self._standing_by = False
                return True
            holder = imap_state.lease_owner(self.engine, a.name, a.folder)
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:     # OSError: e.g. EMFILE in a flood
            self._backoff(exc)
            return False
        owner, expires = holder or ("?", now)
        if not self._standing_by:
            log.info("imap %s: %s is polled by %s; standing by", a.name, a.folder, owner)
            self._standing_by = True
        self._set(state="standby")
        self.stop.wait(min(max(expires - now + 0.05, 0.05), self.lease_ttl / 3))
        return False

    def _renew_lease(self) -> None:
        a, now = self.account, self.clock()
        if now < self._lease_renew_at:
            return
        if not imap_state.acquire_lease(self.engine, a.name, a.folder, self.owner_id, self.lease_ttl, now):
            raise LeaseLost(f"{a.folder}: lease taken by another poller")
        self._lease_renew_at = now + self.lease_ttl / 3

    def _release_lease(self) -> None:
        try:
            imap_state.release_lease(self.engine, self.account.name, self.account.folder, self.owner_id)
        except (StoreUnavailable, SQLAlchemyError) as exc:
            log.warning("imap %s: could not release the lease: %s", self.account.name, _describe(exc))

    # ------------------------------------------------------------- failures
    def _attempt(self) -> None:
        try:
            self._session()
        except LeaseLost as exc:
            log.warning("imap %s: %s; standing by", self.account.name, exc)
        except LoginError as exc:
            if "UNAVAILABLE" in str(exc):       # the server's auth backend is down: transient
                self._backoff(exc)
            else:
                self._auth_failed(exc)
        except ConfigError as exc:              # no password configured or readable
            self._auth_failed(exc)
        except RECONNECT as exc:
            self._backoff(exc)
        except Exception as exc:  # noqa: BLE001 - an intake edge logs, backs off and goes on
            log.exception("imap %s: unexpected error", self.account.name)
            self._backoff(exc)

    def _backoff(self, exc: BaseException) -> None:
        self._failures += 1
        delay = backoff_delay(self._failures, self.backoff_base, self.backoff_cap, self.rand())
        log.warning("imap %s: %s; retry %d in %.1fs", self.account.name, _describe(exc), self._failures, delay)
        self._pause("backoff", exc, delay)

    def _auth_failed(self, exc: BaseException) -> None:
        a = self.account
        self._auth_failures += 1
        delay = min(self.auth_backoff_cap, self.auth_backoff * 2 ** min(self._auth_failures - 1, 20))
        delay *= 1 + self.rand() / 10           # jitter upwards only: never sooner than auth_backoff
        log.error("ALERT imap %s: login as %s at %s:%d refused (%s); next attempt in %.0fs - check the "
                  "password", a.name, a.username, a.host, a.port, _describe(exc), delay)
        self._pause("auth_failed", exc, delay)

    def _pause(self, state: str, exc: BaseException, delay: float) -> None:
        now = self.clock()
        self._set(state=state, last_error=_describe(exc), last_error_at=_iso(now), retry_at=_iso(now + delay))
        self.stop.wait(delay)

    # ------------------------------------------------------------- session
    def _session(self) -> None:
        client = self._connect()
        graceful = False
        try:
            while not self.stop.is_set():
                uidvalidity, uidnext = self._select(client)
                self._scan(client, uidvalidity, uidnext)
                self._failures = 0
                self._set(retry_at=None)
                self._wait_for_mail(client)
            graceful = True
        finally:
            self._close(client, graceful)

    def _connect(self) -> IMAPClient:
        a = self.account
        self._set(state="connecting")
        self._bump("connects")
        password = read_password(a, self.environ, self.credentials_dir)
        ctx = tls_context(a) if a.security != "none" else None
        client = IMAPClient(a.host, port=a.port, ssl=a.security == "tls", ssl_context=ctx, timeout=self.timeout)
        try:
            if a.security == "starttls":
                client.starttls(ctx)            # raises when not offered: never falls back to plain
            self._bump("logins")
            client.login(a.username, password)
            self._auth_failures = 0
            self._caps = frozenset(client.capabilities())
            if a.move_to and not client.folder_exists(a.move_to):
                client.create_folder(a.move_to)
                log.info("imap %s: created folder %s for move_to", a.name, a.move_to)
        except BaseException:
            self._close(client, graceful=False)
            raise
        return client

    @staticmethod
    def _close(client: IMAPClient, graceful: bool) -> None:
        try:
            if graceful:
                client.logout()
                return
        except (OSError, IMAPClient.Error):
            pass
        try:
            client.shutdown()
        except (OSError, IMAPClient.Error):
            pass

    def _select(self, client: IMAPClient) -> tuple[int, int]:
        """SELECT the folder; start a first sync or a resync when needed; finish owed acks."""
        a = self.account
        info = client.select_folder(a.folder)
        uv = int(info[b"UIDVALIDITY"])
        uidnext = int(info.get(b"UIDNEXT") or max(client.search(["ALL"]) or [0]) + 1)
        state = imap_state.load_folder(self.engine, a.name, a.folder)
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        if state is None:
            log.info("imap %s: first contact with %s: taking its UNSEEN messages", a.name, a.folder)
            imap_state.begin_sync(self.engine, a.name, a.folder, uv, uidnext - 1, None, now)
        elif state.uidvalidity != uv:
            since = imap_state.last_taken_at(self.engine, a.name, a.folder)
            log.warning("imap %s: UIDVALIDITY of %s changed from %d to %d (folder reset or recreated): "
                        "old UIDs not trusted, resyncing by content", a.name, a.folder, state.uidvalidity, uv)
            imap_state.begin_sync(self.engine, a.name, a.folder, uv, uidnext - 1,
                                  since - timedelta(days=1) if since else None, now)
        self._ack_owed(client, uv)
        return uv, uidnext

    def _ack_owed(self, client: IMAPClient, uv: int) -> None:
        a = self.account
        owed = imap_state.unacked(self.engine, a.name, a.folder, uv)
        if owed:
            log.info("imap %s: %d message(s) committed before a restart still to be flagged/moved",
                     a.name, len(owed))
        for i in range(0, len(owed), self.batch_size):
            self._acknowledge(client, uv, owed[i:i + self.batch_size])

    # ------------------------------------------------------------- scan and take
    def _scan(self, client: IMAPClient, uv: int, uidnext: int) -> None:
        a = self.account
        self._set(state="polling")
        state = imap_state.load_folder(self.engine, a.name, a.folder)
        cursor = state.last_uid
        for lo, hi, scoped in plan_windows(state.last_uid, state.resync_until, uidnext, self.search_window):
            uids = self._search(client, state, lo, hi, scoped)
            for i in range(0, len(uids), self.batch_size):
                if self.stop.is_set():
                    return
                self._renew_lease()
                self._take(client, uv, uids[i:i + self.batch_size])
                cursor = uids[min(i + self.batch_size, len(uids)) - 1]
            if hi is not None and hi > cursor:  # searched completely: what the search skipped
                self._record(uv, [], hi)        # (read before a first sync) must not come later
                cursor = hi
        if state.resync_until:
            imap_state.finish_resync(self.engine, a.name, a.folder, uv)

    def _search(self, client: IMAPClient, state: FolderState, lo: int, hi: int | None, scoped: bool) -> list[int]:
        """UIDs in lo..hi (hi None = `*`) to take; in a (re)sync only UNSEEN, or also recent."""
        criteria: list = ["UID", f"{lo}:{'*' if hi is None else hi}"]
        if scoped:
            since = state.resync_since
            criteria += ["UNSEEN"] if since is None else ["OR", "UNSEEN", "SINCE", since.date()]
        return sorted(u for u in client.search(criteria) if u >= lo and (hi is None or u <= hi))

    def _take(self, client: IMAPClient, uv: int, batch: list[int]) -> None:
        fetched = client.fetch(batch, ["RFC822.SIZE"])
        sizes = {uid: int(fetched[uid].get(b"RFC822.SIZE") or 0) for uid in batch if uid in fetched}
        chunks = plan_chunks([uid for uid in batch if uid in sizes], sizes, self.batch_size, self.batch_bytes)
        if not chunks:                          # all gone since SEARCH: just move the cursor
            self._record(uv, [], batch[-1])
        for n, chunk in enumerate(chunks):
            self._take_chunk(client, uv, chunk, batch[-1] if n == len(chunks) - 1 else chunk[-1])

    def _take_chunk(self, client: IMAPClient, uv: int, chunk: list[int], cursor: int) -> None:
        fetched = client.fetch(chunk, ["BODY.PEEK[]"])
        # a message expunged by another client since SEARCH comes back as NIL or not at all
        msgs = [(uid, fetched[uid][b"BODY[]"]) for uid in chunk
                if uid in fetched and fetched[uid].get(b"BODY[]") is not None]
        fresh, known = self._sort_out(uv, msgs)
        envelopes = [self._envelope(uv, uid) for uid, *_ in fresh]
        bases = self.spool.put_many((raw, env) for (_, raw, _, _), env in zip(fresh, envelopes)) if fresh else []
        taken = [Taken(uid, sha, mid, base) for (uid, _, sha, mid), base in zip(fresh, bases)]
        self._record(uv, taken + [Taken(uid, sha, mid) for uid, _, sha, mid in known], cursor)
        self._stored(uv, taken)
        self._acknowledge(client, uv, sorted(uid for uid, *_ in fresh + known))
        self._bump("batches")

    def _sort_out(self, uv: int, msgs: list[tuple[int, bytes]]) -> tuple[list, list]:
        """Split fetched messages into fresh ones and ones already taken (by UID or sha256)."""
        a = self.account
        items = [(uid, raw, hashlib.sha256(raw).hexdigest(), message_id_of(raw)) for uid, raw in msgs]
        by_uid = imap_state.known_uids(self.engine, a.name, a.folder, uv, [i[0] for i in items])
        by_sha = imap_state.known_digests(self.engine, a.name, a.folder, [i[2] for i in items])
        fresh, known = [], []
        for item in items:
            if item[0] in by_uid or item[2] in by_sha:
                log.info("imap %s: uid %d/%d message_id=%s already taken (same %s); only flagging it",
                         a.name, uv, item[0], item[3], "uid" if item[0] in by_uid else "sha256")
                known.append(item)
            else:
                fresh.append(item)
        return fresh, known

    def _envelope(self, uv: int, uid: int) -> Envelope:
        return Envelope(mail_from=None, rcpt_to=(), source=f"imap:{self.account.name}",
                        peer=f"{self.account.folder}/{uv}/{uid}", received_at=_iso(self.clock()))

    def _record(self, uv: int, taken: list[Taken], cursor: int) -> None:
        a = self.account
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        imap_state.record(self.engine, a.name, a.folder, uv, taken, cursor, now)

    def _stored(self, uv: int, taken: list[Taken]) -> None:
        if taken:
            self._bump("taken", len(taken))
            self._set(last_mail_at=_iso(self.clock()))
        for t in taken:
            log.info("imap %s: took uid %d/%d message_id=%s into spool %s", self.account.name, uv, t.uid,
                     t.message_id, t.spool_base)
            if self.on_stored is not None:
                try:
                    self.on_stored(t.spool_base)
                except Exception:  # noqa: BLE001 - a wake-up hook must not undo a commit
                    log.exception("imap %s: on_stored failed for %s", self.account.name, t.spool_base)

    # ------------------------------------------------------------- flag / move
    def _acknowledge(self, client: IMAPClient, uv: int, uids: list[int]) -> None:
        """\\Seen or move committed messages, then note it. A NO (say the message was
        expunged meanwhile) is logged and not retried: the message is recorded as taken."""
        if not uids:
            return
        try:
            self._flag_or_move(client, uids)
        except IMAPClient.AbortError:
            raise
        except IMAPClient.Error as exc:
            log.warning("imap %s: flag/move of uids %s refused: %s", self.account.name, uids[:10], _describe(exc))
        a = self.account
        imap_state.mark_acked(self.engine, a.name, a.folder, uv, uids)

    def _flag_or_move(self, client: IMAPClient, uids: list[int]) -> None:
        dest = self.account.move_to
        if not dest:
            client.add_flags(uids, [SEEN], silent=True)
        elif b"MOVE" in self._caps:
            client.move(uids, dest)
        elif b"UIDPLUS" in self._caps:
            client.copy(uids, dest)
            client.add_flags(uids, [DELETED], silent=True)
            client.uid_expunge(uids)            # only these UIDs, never a plain EXPUNGE
        else:
            self._warn_once("nomove", "imap %s: server offers neither MOVE nor UIDPLUS: flagging \\Seen "
                            "instead of moving to %s", self.account.name, dest)
            client.add_flags(uids, [SEEN], silent=True)

    # ------------------------------------------------------------- waiting
    def _wait_for_mail(self, client: IMAPClient) -> None:
        if self._missed_news(client):
            return
        if self.account.idle and b"IDLE" in self._caps:
            self._idle(client, min(self.account.poll_seconds, self.idle_reissue))
            return
        deadline = self.monotonic() + self.account.poll_seconds
        while not self.stop.is_set() and (left := deadline - self.monotonic()) > 0:
            self.stop.wait(min(left, self.lease_ttl / 3))
            self._renew_lease()

    def _idle(self, client: IMAPClient, period: float) -> None:
        """IDLE until new mail, `period` (safety-net poll, <= 29 min) or stop. idle_check()
        returns [] on EOF instead of raising, so an early empty return leaves IDLE at once:
        idle_done() then raises AbortError on a dead connection."""
        client.idle()
        self._set(state="idle")
        self._bump("idles")
        deadline = self.monotonic() + period
        while not self.stop.is_set() and (left := deadline - self.monotonic()) > 0:
            wait = min(left, self.tick)
            started = self.monotonic()
            responses = client.idle_check(timeout=wait)
            if self._has_news(responses):
                break
            if not responses and self.monotonic() - started < wait / 2:
                break
            self._renew_lease()
        client.idle_done()

    @staticmethod
    def _missed_news(client: IMAPClient) -> bool:
        """Mail announced while we were busy: imaplib keeps an EXISTS that came with another
        command's response, and IDLE would not repeat it. The SELECT's own EXISTS is first."""
        stash = getattr(getattr(client, "_imap", None), "untagged_responses", {})
        return len(stash.get("EXISTS", ())) > 1

    @staticmethod
    def _has_news(responses: list) -> bool:
        for r in responses:
            if r and r[0] == b"BYE":
                raise ServerGone("server said BYE: " + " ".join(x.decode("latin-1") for x in r[1:]
                                                                 if isinstance(x, bytes)))
            if len(r) > 1 and r[1] == b"EXISTS":
                return True
        return False
