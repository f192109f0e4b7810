"""Helpers of the intake tests (SMTP, LMTP, the pipe hand-off): drain a spool, talk raw SMTP."""
from __future__ import annotations

import socket


def entries(spool) -> list:
    """Every entry of `spool` as (envelope, raw), claimed and marked done (so, drained)."""
    out = []
    while (c := spool.claim()) is not None:
        out.append(spool.read(c))
        spool.done(c)
    return out


def raw_session(port: int, payload: bytes, until: bytes | None = None, *, timeout: float = 30) -> bytes:
    """The greeting and every reply to `payload`, sent in one packet (PIPELINING style).

    With `until`, reading stops once it appears; without, it goes on until the server closes
    the connection, and the server's 221 to the QUIT that ends `payload` is the barrier (every
    command before it has been handled), not a sleep. A server that never answers fails on
    the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        data = s.recv(1024)
        s.sendall(payload)
        while (until is None or until not in data) and (chunk := s.recv(65536)):
            data += chunk
    if until is None:
        assert b"\r\n221 " in data, data
    return data
