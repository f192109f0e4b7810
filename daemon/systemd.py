"""The systemd edge: sd_notify (READY=1, STOPPING=1, STATUS=, WATCHDOG=1) over $NOTIFY_SOCKET.

A plain AF_UNIX datagram, as the protocol specifies; no dependency. Outside systemd
(no NOTIFY_SOCKET) every call is a no-op.
"""
from __future__ import annotations

import os
import socket


def notify(message: str, *, wait: bool = True) -> bool:
    """Send one notification; True when a NOTIFY_SOCKET took it. `wait=False` (the watchdog
    pings) never blocks the caller: a full socket queue drops that ping instead."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]                 # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.setblocking(wait)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.5)
    except ValueError:
        return None
