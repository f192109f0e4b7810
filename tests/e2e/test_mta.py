"""A real `helpdesk serve` behind an MTA: LMTP on a UNIX socket, the pipe hand-off, and what
an admin watches - /metrics, /healthz and `helpdesk status` - with a real relay that is
then stopped (the relay failing shows in all three)."""
from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request

from tests.conftest import free_port, write_site_config
from tests.e2e.helpers import Daemon, helpdesk, tickets, wait_for
from tests.integration.test_lmtp_intake import Client, close_clients
from tests.integration.test_outbox_relay import Sink

MSG = (b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: {subj}\r\n"
       b"Message-ID: <{mid}@example.org>\r\n\r\nPlease help.\r\n")


def mail(subj: str, mid: str) -> bytes:
    return MSG.replace(b"{subj}", subj.encode()).replace(b"{mid}", mid.encode())


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def lmtp_send(path, raw: bytes, rcpts: list[str]) -> list[bytes]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    c = Client(s)
    try:
        c.reply()
        c.cmd("LHLO mta.test")
        _rcpt, data = c.send("carol@example.org", rcpts, raw)
        c.cmd("QUIT")
        return data
    finally:
        close_clients()


def test_lmtp_pipe_metrics_healthz_and_status(tmp_path):
    hport, sock = free_port(), tmp_path / "run" / "lmtp.sock"
    with Sink() as sink:
        cfg = write_site_config(tmp_path, f"""
[lmtp]
enabled = true
socket = "run/lmtp.sock"

[http]
enabled = true
port = {hport}

[health]
status_seconds = 1

[queue]
workers = 1
sweep_seconds = 0.5

[outbound]
port = {sink.port}
retry_first_seconds = 1.0
retry_max_seconds = 1.0
""")
        daemon = Daemon(cfg).start()
        try:
            assert b"lmtp unix:" in daemon.log.read_bytes() and f"http 127.0.0.1:{hport}".encode() in daemon.log.read_bytes()
            data = lmtp_send(sock, mail("via lmtp", "l-1"), ["support@example.com", "it@example.com"])
            assert len(data) == 2 and all(d.startswith(b"250 2.0.0") for d in data)
            piped = helpdesk(cfg, "ingest", "--sender", "carol@example.org", "--recipient", "support@example.com",
                             input=mail("via pipe", "p-1"))
            assert piped.returncode == 0 and piped.stderr == b""
            rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(tickets(cfg)), timeout=60, interval=0.2)
            assert sorted(r["subject"] for r in rows) == ["via lmtp", "via pipe"]
            sink.handler.wait_for(2)

            def settled():
                code, body = get(hport, "/metrics")
                text = body.decode()
                return text if code == 200 and metric(text, "helpdesk_outbox_pending") == 0.0 else None
            text = wait_for(settled, timeout=60, interval=0.2)
            assert metric(text, 'helpdesk_messages_received_total{intake="lmtp"}') == 1.0
            assert metric(text, 'helpdesk_messages_received_total{intake="pipe"}') == 1.0
            assert metric(text, "helpdesk_messages_stored_total") == 2.0
            assert metric(text, "helpdesk_messages_quarantined_total") == 0.0
            assert metric(text, "helpdesk_ingest_seconds_count") == 2.0
            assert metric(text, "helpdesk_spool_depth") == 0.0
            for name in ("helpdesk_outbox_sent_total", "helpdesk_outbox_failed_total", "helpdesk_escalations_fired_total"):
                assert metric(text, name) is not None, name
            code, body = get(hport, "/healthz")
            health = json.loads(body)
            assert code == 200 and health["problems"] == [] and health["database"] == "ok"
            st = helpdesk(cfg, "status", "--json")
            snap = json.loads(st.stdout)
            assert st.returncode == 0, snap["problems"]
            assert [(p["kind"], p["alive"]) for p in snap["processes"]] == [("serve", True)]
            assert snap["outbox"]["pending"] == 0 and snap["outbox"]["last_sent_at"]

            sink.controller.stop()                                   # the relay goes away
            sink.controller.start = lambda: None                     # (the with-block's exit stops it again)
            sink.controller.stop = lambda: None
            assert lmtp_send(sock, mail("relay down", "l-2"), ["support@example.com"])[0].startswith(b"250")

            def failing():
                code, body = get(hport, "/healthz")
                return json.loads(body) if code == 503 else None
            health = wait_for(failing, timeout=60, interval=0.2)
            assert any(p.startswith("the relay has been failing") for p in health["problems"])
            st = helpdesk(cfg, "status")
            assert st.returncode == 1
            assert b"PROBLEM the relay has been failing" in st.stdout and b"outbox " in st.stdout
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.proc.wait(timeout=60) == 0
        finally:
            daemon.kill()
    assert not sock.exists()
    assert list((tmp_path / "state" / "run").glob("*.json")) == []
    st = helpdesk(cfg, "status")
    assert st.returncode == 1 and b"daemon not running" in st.stdout


def test_json_log_lines_carry_message_id_and_ticket(tmp_path):
    cfg = write_site_config(tmp_path, '[log]\nformat = "json"\n\n[queue]\nbackend = "immediate"\n')
    eml = tmp_path / "one.eml"
    eml.write_bytes(mail("json logs", "j-1"))
    proc = helpdesk(cfg, "ingest", str(eml))
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    stored = [x for x in lines if x["message"].startswith("stored ")]
    assert stored and stored[0]["message_id"] == "j-1@example.org" and stored[0]["ticket"] == 1
