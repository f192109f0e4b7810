"""The observability edge: `GET /metrics` (Prometheus text) and `GET /healthz` over HTTP.

A stdlib `ThreadingHTTPServer` in a daemon thread, started by `serve` and `worker` when
`[http] enabled = true`. /healthz answers 200 with a JSON body when the process's health
check finds no problem, 503 with the same body (its `problems` say why) when it finds
one. Anything else is 404; only GET and HEAD. A busy port is a HelpdeskError naming
`http.port`. Nothing here decides what is healthy: the composition root passes
`check()`, which returns the JSON body (with a `problems` list).
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from daemon.errors import HelpdeskError
from daemon.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server_version = "helpdeskd"
    metrics: Metrics
    check: Callable[[], dict]

    def do_GET(self) -> None:                      # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, CONTENT_TYPE, self.metrics.render())
            elif path == "/healthz":
                body = self.check()
                self._send(503 if body.get("problems") else 200, "application/json",
                           json.dumps(body, default=str).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")
        except Exception as exc:                   # a broken check is itself unhealthy
            log.exception("http %s failed", path)
            self._send(503, "application/json", json.dumps({"problems": [f"health check failed: {exc}"]}).encode())

    def do_HEAD(self) -> None:                     # noqa: N802
        self.do_GET()

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:   # noqa: A002 - scrapes are not log lines
        log.debug("http %s " + format, self.client_address[0], *args)


class HttpServer:
    """The /metrics and /healthz listener of one process; `start()`, then `stop()`."""

    def __init__(self, host: str, port: int, metrics: Metrics, check: Callable[[], dict]):
        handler = type("Handler", (_Handler,), {"metrics": metrics, "check": staticmethod(check)})
        self.where = f"{host}:{port}"
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise HelpdeskError(f"http.port: cannot listen on {host}:{port}: {exc.strerror or exc} "
                                f"(another daemon may be running)") from None
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "HttpServer":
        self.thread.start()
        log.info("http: /metrics and /healthz on %s:%d", self.server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
