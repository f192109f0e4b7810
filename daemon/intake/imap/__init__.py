"""IMAP intake edge: one `ImapPoller` per [[imap]] account, each in its own thread.

A session: take the (account, folder) lease → connect (implicit TLS with certificate
verification, STARTTLS, or plain on loopback only) → LOGIN, or SASL XOAUTH2/OAUTHBEARER
with an OAuth 2.0 access token → SELECT → finish any \\Seen/MOVE still owed from a crash →
scan → IDLE (or sleep `poll_seconds`) → scan ...

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

The modules: `plan` (pure: UID windows, FETCH chunks, Message-ID), `status` (the status
snapshot), `connect` (TLS, login, SASL), `folder` (select, scan, take, flag/move) and
`poller` (the thread: lease, backoff, IDLE).
"""
from daemon.intake.imap.poller import ImapPoller, imap_tokens
from daemon.intake.imap.status import PollerStatus

__all__ = ["ImapPoller", "PollerStatus", "imap_tokens"]
