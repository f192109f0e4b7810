"""Pipe hand-off: an MTA's pipe delivery (`helpdesk ingest` on stdin) into a running daemon.

When a `serve` of this host runs on the configured state directory (daemon.processes),
the message and its envelope (`--sender`, `--recipient`, as Postfix passes `${sender}`
and `${recipient}`) are made durable in that daemon's spool - the same write, fsync and
rename as SMTP intake - and the daemon is woken with SIGUSR1 (when we may not signal it,
its worker's idle poll finds the entry a moment later). Nothing of the pipeline is
loaded: this path imports only the config reader, the spool and the process registry,
so a delivery costs little more than starting Python. With no daemon running,
`helpdesk ingest` processes the message itself (the full path). Edge module.
"""
from __future__ import annotations

import io
import os
import signal
import sys
from datetime import datetime, timezone

from daemon.errors import SpoolError
from daemon.intake.files import split_stdin
from daemon.envelope import Envelope
from daemon.processes import running_serve
from daemon.spool import Spool

WAKE_SIGNAL = signal.SIGUSR1


def envelope_sender(sender: str | None) -> str | None:
    """`--sender` as the envelope's mail_from: "" for the null sender, None when not given."""
    if sender is None:
        return None
    sender = sender.strip().strip("<>")
    return "" if sender.upper() == "MAILER-DAEMON" else sender


def hand_off(cfg, data: bytes, sender: str | None, recipients: list[str]) -> int | None:
    """Spool `data` for a running serve and wake it; the number of messages spooled, or None
    when no daemon runs (the caller then processes the mail itself). SpoolError on failure."""
    daemon = running_serve(cfg.state_dir, stale_after=3 * cfg.health.status_seconds + 5)
    if daemon is None:
        return None
    now = datetime.now(timezone.utc).isoformat()
    mail_from, rcpts = envelope_sender(sender), tuple(r.strip().strip("<>") for r in recipients)
    items = [(m.raw, Envelope(mail_from, rcpts, "pipe", m.origin, now)) for m in split_stdin(data)]
    if not items:
        return 0
    try:
        spool = Spool(cfg.state_dir / "spool").ensure()
    except OSError as exc:
        raise SpoolError(f"cannot write spool {cfg.state_dir / 'spool'}: {exc.strerror or exc}") from exc
    spool.put_many(items)
    try:
        os.kill(daemon.pid, WAKE_SIGNAL)
    except OSError:
        pass                       # another user's daemon: its idle poll picks the entry up
    return len(items)


def replay_stdin(data: bytes) -> None:
    """Put bytes already read back on stdin for the full ingest path."""
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
