"""Taking mail from a selected IMAP folder: the part of `ImapPoller` between SELECT and IDLE.

`FolderSync` is mixed into daemon.intake.imap.poller.ImapPoller: SELECT (first contact,
UIDVALIDITY change → resync), finish \\Seen/MOVE still owed from a crash, scan by UID windows,
FETCH BODY.PEEK[] in chunks, commit each chunk to the spool, record it in store/imap_state,
then flag or move. See the package docstring for the order and why.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone

from imapclient import IMAPClient

from daemon.intake.imap.plan import plan_chunks, plan_windows, message_id_of
from daemon.intake.imap.status import describe, iso
from daemon.model import Envelope
from store import imap_state
from store.imap_state import FolderState, Taken

log = logging.getLogger(__name__)

SEEN, DELETED = b"\\Seen", b"\\Deleted"


class FolderSync:
    """Select, scan, take and acknowledge; needs the poller's account, engine, spool, clock,
    batch settings, `_renew_lease`, `_set`, `_bump`, `_warn_once` and `_caps`."""

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
                        peer=f"{self.account.folder}/{uv}/{uid}", received_at=iso(self.clock()))

    def _record(self, uv: int, taken: list[Taken], cursor: int) -> None:
        a = self.account
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        imap_state.record(self.engine, a.name, a.folder, uv, taken, cursor, now)

    def _stored(self, uv: int, taken: list[Taken]) -> None:
        if taken:
            self._bump("taken", len(taken))
            self._set(last_mail_at=iso(self.clock()))
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
            log.warning("imap %s: flag/move of uids %s refused: %s", self.account.name, uids[:10], describe(exc))
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
