"""IMAP intake state: the per-folder UID cursor, the poller lease and the taken-message log.

Used only by the IMAP intake edge (daemon/intake/imap.py); its SQL is its own (SQL lives
only in store/, spread over the modules that own the tables). Three tables, registered on
the same SQLModel.metadata as store/tables.py; store/db.py imports this module, so
`store.db.create_schema` creates them (`create_tables` does it explicitly):

* `imapfolder` — per (account, folder): the UIDVALIDITY the cursor belongs to and
  `last_uid`, the highest UID dealt with. While `resync_until` > 0 a first sync or a
  resync (UIDVALIDITY changed, folder recreated) is in progress for UIDs up to it.
* `imaplease` — per (account, folder): which poller may import, until when. A second
  daemon on the same mailbox waits while a live owner keeps renewing it.
* `imaptaken` — one row per (account, folder, UIDVALIDITY, UID) committed to the spool,
  with the sha256 of the raw bytes, the Message-ID and whether \\Seen/MOVE was done
  (`acked`). A crash after the spool commit but before the flag is finished from here,
  and a resync recognises messages already taken by their sha256.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import BigInteger, Column, Index, func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel, select

from daemon.clock import as_utc as _utc
from daemon.errors import StoreUnavailable


class ImapFolder(SQLModel, table=True):
    account: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    resync_until: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    resync_since: datetime | None = None       # resync scope: UNSEEN, or also arrived since
    updated_at: datetime


class ImapLease(SQLModel, table=True):
    account: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    owner: str
    expires_at: float                          # epoch seconds


class ImapTaken(SQLModel, table=True):
    __table_args__ = (Index("ix_imaptaken_sha", "account", "folder", "sha256"),
                      Index("ix_imaptaken_acked", "account", "folder", "uidvalidity", "acked"))
    account: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    uidvalidity: int = Field(sa_column=Column(BigInteger, primary_key=True))
    uid: int = Field(sa_column=Column(BigInteger, primary_key=True))
    sha256: str
    message_id: str = ""
    spool_base: str = ""                       # "" when recognised, not spooled, by this row
    taken_at: datetime
    acked: bool = False


TABLES = [ImapFolder.__table__, ImapLease.__table__, ImapTaken.__table__]


@dataclass(frozen=True)
class FolderState:
    """The cursor of one (account, folder); `resync_until` > 0 while a (re)sync runs."""

    uidvalidity: int
    last_uid: int
    resync_until: int = 0
    resync_since: datetime | None = None


@dataclass(frozen=True)
class Taken:
    """One message dealt with: spooled as `spool_base`, or recognised (base "")."""

    uid: int
    sha256: str
    message_id: str = ""
    spool_base: str = ""


def create_tables(engine: Engine) -> None:
    """Create the IMAP tables if missing (create_schema does it too once imported)."""
    SQLModel.metadata.create_all(engine, tables=TABLES)


def _unavailable(exc: OperationalError) -> StoreUnavailable:
    orig = getattr(exc, "orig", None) or exc
    return StoreUnavailable(f"database unavailable: {orig.__class__.__name__}: {orig}")


def _write(engine: Engine) -> Session:
    return Session(engine.execution_options(sqlite_immediate=True), expire_on_commit=False)


def load_folder(engine: Engine, account: str, folder: str) -> FolderState | None:
    try:
        with Session(engine) as s:
            row = s.get(ImapFolder, (account, folder))
            if row is None:
                return None
            return FolderState(row.uidvalidity, row.last_uid, row.resync_until, row.resync_since)
    except OperationalError as exc:
        raise _unavailable(exc) from exc


def last_taken_at(engine: Engine, account: str, folder: str) -> datetime | None:
    """When this folder last gave us a message (any UIDVALIDITY), UTC."""
    with Session(engine) as s:
        q = select(func.max(ImapTaken.taken_at)).where(ImapTaken.account == account,
                                                       ImapTaken.folder == folder)
        return s.exec(q).first()


def begin_sync(engine: Engine, account: str, folder: str, uidvalidity: int, until_uid: int,
               since: datetime | None, now: datetime) -> FolderState:
    """Start a first sync or a resync: forget the old cursor, scan UIDs 1..until_uid by
    UNSEEN (and, with `since`, everything that arrived since then)."""
    state = FolderState(uidvalidity, 0, max(until_uid, 0), since and _utc(since))
    try:
        with _write(engine) as s:
            row = s.get(ImapFolder, (account, folder)) or ImapFolder(account=account, folder=folder,
                                                                    uidvalidity=0, updated_at=_utc(now))
            row.uidvalidity, row.last_uid = uidvalidity, 0
            row.resync_until, row.resync_since = state.resync_until, state.resync_since
            row.updated_at = _utc(now)
            s.add(row)
            s.commit()
    except OperationalError as exc:
        raise _unavailable(exc) from exc
    return state


def finish_resync(engine: Engine, account: str, folder: str, uidvalidity: int) -> None:
    with _write(engine) as s:
        s.exec(update(ImapFolder).where(ImapFolder.account == account, ImapFolder.folder == folder,
                                        ImapFolder.uidvalidity == uidvalidity)
               .values(resync_until=0, resync_since=None))
        s.commit()


def record(engine: Engine, account: str, folder: str, uidvalidity: int, items: Iterable[Taken],
           cursor: int, now: datetime) -> None:
    """Log messages just committed to the spool (or recognised) and move the cursor to
    `cursor` in one transaction. Call right after Spool.put_many returned."""
    try:
        with _write(engine) as s:
            for t in items:
                key = (account, folder, uidvalidity, t.uid)
                if s.get(ImapTaken, key) is None:
                    s.add(ImapTaken(account=account, folder=folder, uidvalidity=uidvalidity, uid=t.uid,
                                    sha256=t.sha256, message_id=t.message_id[:998],
                                    spool_base=t.spool_base, taken_at=_utc(now)))
            s.exec(update(ImapFolder).where(ImapFolder.account == account, ImapFolder.folder == folder,
                                            ImapFolder.uidvalidity == uidvalidity,
                                            ImapFolder.last_uid < cursor)
                   .values(last_uid=cursor, updated_at=_utc(now)))
            s.commit()
    except OperationalError as exc:
        raise _unavailable(exc) from exc


def mark_acked(engine: Engine, account: str, folder: str, uidvalidity: int, uids: list[int]) -> None:
    with _write(engine) as s:
        for chunk in range(0, len(uids), 500):
            s.exec(update(ImapTaken).where(ImapTaken.account == account, ImapTaken.folder == folder,
                                           ImapTaken.uidvalidity == uidvalidity,
                                           ImapTaken.uid.in_(uids[chunk:chunk + 500]))
                   .values(acked=True))
        s.commit()


def unacked(engine: Engine, account: str, folder: str, uidvalidity: int) -> list[int]:
    """UIDs committed to the spool whose \\Seen/MOVE is still owed (a crash in between)."""
    with Session(engine) as s:
        q = select(ImapTaken.uid).where(ImapTaken.account == account, ImapTaken.folder == folder,
                                        ImapTaken.uidvalidity == uidvalidity,
                                        ImapTaken.acked == False).order_by(ImapTaken.uid)  # noqa: E712
        return list(s.exec(q))


def known_uids(engine: Engine, account: str, folder: str, uidvalidity: int, uids: list[int]) -> set[int]:
    if not uids:
        return set()
    with Session(engine) as s:
        q = select(ImapTaken.uid).where(ImapTaken.account == account, ImapTaken.folder == folder,
                                        ImapTaken.uidvalidity == uidvalidity, ImapTaken.uid.in_(uids))
        return set(s.exec(q))


def known_digests(engine: Engine, account: str, folder: str, digests: Iterable[str]) -> set[str]:
    """Which of these raw-content sha256s this folder already gave us, under any UIDVALIDITY."""
    wanted = list(set(digests))
    if not wanted:
        return set()
    with Session(engine) as s:
        q = select(ImapTaken.sha256).where(ImapTaken.account == account, ImapTaken.folder == folder,
                                           ImapTaken.sha256.in_(wanted)).distinct()
        return set(s.exec(q))


def acquire_lease(engine: Engine, account: str, folder: str, owner: str, ttl: float, now: float) -> bool:
    """Take or renew the import lease; False while another live owner holds it."""
    try:
        with _write(engine) as s:
            row = s.exec(select(ImapLease).where(ImapLease.account == account, ImapLease.folder == folder)
                         .with_for_update()).first()
            if row is None:
                row = ImapLease(account=account, folder=folder, owner=owner, expires_at=now + ttl)
            elif row.owner == owner or row.expires_at <= now:
                row.owner, row.expires_at = owner, now + ttl
            else:
                return False
            s.add(row)
            s.commit()
            return True
    except IntegrityError:
        return False                    # another daemon inserted it first
    except OperationalError as exc:
        raise _unavailable(exc) from exc


def lease_owner(engine: Engine, account: str, folder: str) -> tuple[str, float] | None:
    with Session(engine) as s:
        row = s.get(ImapLease, (account, folder))
        return (row.owner, row.expires_at) if row else None


def release_lease(engine: Engine, account: str, folder: str, owner: str) -> None:
    """Give the lease up at shutdown so another daemon can take over at once."""
    with _write(engine) as s:
        s.exec(update(ImapLease).where(ImapLease.account == account, ImapLease.folder == folder,
                                       ImapLease.owner == owner).values(expires_at=0.0))
        s.commit()
