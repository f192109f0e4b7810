"""Receive memory is bounded (issue 12 defect 4, reliability case 13): the SMTP intake in
a subprocess of its own takes 10 parallel large transfers and its peak RSS (VmHWM) grows
by a bounded amount, not by a multiple of the mail volume.

Figures for the full attack (10 x 24 MB) are printed by bench/smtp_memory.py: intake
alone 25 -> 37 MB (aiosmtpd's own DATA: 25 -> 531 MB). Here 10 x 8 MB = 80 MB arrive at
once; the bound is 48 MB of growth: streaming measured ~12 MB, the old whole-message DATA
would need ~4 x 80 = 320 MB, so the margin covers allocator noise either way.
"""
from __future__ import annotations

from tests.conftest import free_port
from tests.integration.intake_memory import send_at_once, start_intake, status_kb, stop_intake


def mail(i: int, mb: int) -> bytes:
    line = (b"%02d" % i) + b"x" * 74 + b"\r\n"
    return b"Subject: big %d\r\n\r\n" % i + line * (mb * 1024 * 1024 // len(line))


def test_ten_parallel_large_transfers_keep_the_intake_small(tmp_path):
    port = free_port()
    proc = start_intake(tmp_path / "spool", port, max_bytes=10_000_000, timeout=120)
    try:
        start = status_kb(proc.pid, "VmRSS")
        mails = [mail(i, 8) for i in range(10)]
        results = send_at_once(port, mails, timeout=120)
        growth_mb = (status_kb(proc.pid, "VmHWM") - start) / 1024
    finally:
        stop_intake(proc)
    assert results == ["250"] * 10
    stored = [p.read_bytes() for p in (tmp_path / "spool" / "new").iterdir()]
    assert sorted(s[s.index(b"Subject:"):] for s in stored) == sorted(mails)       # every byte kept
    assert growth_mb < 48, f"intake RSS grew by {growth_mb:.0f} MB receiving 80 MB"
