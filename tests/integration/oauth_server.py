"""A stand-in OAuth 2.0 authorization server on loopback, for the OAuth tests and the bench.

One small HTTP server (stdlib, a thread) plays the parts Microsoft's and Google's servers
play: the **token endpoint** (`/token`: refresh-token grant with rotation, client
credentials, device code), the **device authorization endpoint** (`/devicecode`) and the
**token introspection endpoint** (`/introspect`, RFC 7662) that Dovecot's `oauth2` passdb
and the test SMTP relay ask whether an access token is active and whose it is.

Time is the test's: `expires_in` is what the endpoint answers, and a token is made inactive
only by the test (`expire`, `expire_all`, `revoke`), never by the wall clock. Every token
request is counted (`grants`), and `fail_next` queues answers (a 503, an error) for the
next token requests.
"""
from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Device:
    user_code: str
    client_id: str
    user: str | None = None          # set by approve()
    denied: bool = False
    polls: int = 0


@dataclass
class AuthServer:
    """State of the fake authorization server; `start()` serves it on 127.0.0.1."""

    clients: dict[str, str | None] = field(default_factory=lambda: {"helpdesk": "client-secret"})
    app_users: dict[str, str] = field(default_factory=dict)   # client id -> mailbox for client credentials
    expires_in: int = 3600
    rotate: bool = True
    refresh_expires_in: int | None = None
    refresh_tokens: dict[str, str] = field(default_factory=dict)      # token -> user (active ones)
    access_tokens: dict[str, str] = field(default_factory=dict)       # token -> user (active ones)
    devices: dict[str, _Device] = field(default_factory=dict)
    grants: list[str] = field(default_factory=list)                   # grant_type of each token request
    introspections: int = 0
    fail_next: list[tuple[int, dict]] = field(default_factory=list)
    on_device_poll: object = None                                      # callable(user_code, polls)
    device_interval: float = 5.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------- test controls
    def issue_refresh_token(self, user: str) -> str:
        token = "rt-" + secrets.token_urlsafe(12)
        with self.lock:
            self.refresh_tokens[token] = user
        return token

    def revoke(self, refresh_token: str) -> None:
        with self.lock:
            self.refresh_tokens.pop(refresh_token, None)

    def revoke_all(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def expire(self, access_token: str) -> None:
        with self.lock:
            self.access_tokens.pop(access_token, None)

    def expire_all(self) -> None:
        """Every access token issued so far is reported inactive from now on."""
        with self.lock:
            self.access_tokens.clear()

    def approve(self, user_code: str, user: str) -> None:
        with self.lock:
            for dev in self.devices.values():
                if dev.user_code == user_code:
                    dev.user = user

    def active_access_tokens(self, user: str) -> list[str]:
        with self.lock:
            return [t for t, u in self.access_tokens.items() if u == user]

    # ------------------------------------------------------------- endpoints
    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type", "")
        with self.lock:
            self.grants.append(grant)
            if self.fail_next:
                return self.fail_next.pop(0)
            client = form.get("client_id", "")
            if client not in self.clients or (self.clients[client] and form.get("client_secret") != self.clients[client]
                                               and grant != DEVICE_GRANT):
                return 401, {"error": "invalid_client"}
            if grant == "refresh_token":
                return self._refresh(form.get("refresh_token", ""))
            if grant == "client_credentials" and client in self.app_users:
                return 200, self._issue(self.app_users[client], refresh=False)
            if grant == DEVICE_GRANT:
                return self._device_poll(form.get("device_code", ""))
            return 400, {"error": "unsupported_grant_type"}

    def _refresh(self, token: str) -> tuple[int, dict]:
        user = self.refresh_tokens.get(token)
        if user is None:
            return 400, {"error": "invalid_grant", "error_description": "AADSTS70008: the refresh token has "
                                                                          "expired or been revoked"}
        if self.rotate:
            del self.refresh_tokens[token]
        return 200, self._issue(user, refresh=self.rotate)

    def _issue(self, user: str, refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(12)
        self.access_tokens[access] = user
        answer: dict = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if refresh:
            rt = "rt-" + secrets.token_urlsafe(12)
            self.refresh_tokens[rt] = user
            answer["refresh_token"] = rt
            if self.refresh_expires_in:
                answer["refresh_token_expires_in"] = self.refresh_expires_in
        return answer

    def device_code(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") not in self.clients:
            return 400, {"error": "invalid_client"}
        code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        with self.lock:
            self.devices[code] = _Device(user_code, form["client_id"])
        return 200, {"device_code": code, "user_code": user_code, "verification_uri": "https://login.example/device",
                     "expires_in": 900, "interval": self.device_interval}

    def _device_poll(self, code: str) -> tuple[int, dict]:
        dev = self.devices.get(code)
        if dev is None:
            return 400, {"error": "expired_token"}
        dev.polls += 1
        if self.on_device_poll is not None:
            self.lock.release()
            try:
                self.on_device_poll(dev.user_code, dev.polls)
            finally:
                self.lock.acquire()
        if dev.denied:
            return 400, {"error": "access_denied"}
        if dev.user is None:
            return 400, {"error": "authorization_pending" if dev.polls != 2 else "slow_down"}
        del self.devices[code]
        return 200, self._issue(dev.user, refresh=True)

    def introspect(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            self.introspections += 1
            user = self.access_tokens.get(form.get("token", ""))
        return 200, ({"active": True, "username": user} if user else {"active": False})

    # ------------------------------------------------------------- serving
    def start(self) -> "AuthServer":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.base + "/token"


class Clock:
    """A settable clock (epoch seconds) for token lifetimes: tests move it, never wait."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def direct_post(auth: AuthServer):
    """A `post` for daemon.oauth2 that calls the endpoints in-process (unit tests: no sockets)."""
    routes = {"/token": auth.token, "/devicecode": auth.device_code, "/introspect": auth.introspect}

    def post(url, fields, timeout):
        status, answer = routes[urllib.parse.urlsplit(url).path](dict(fields))
        return status, json.dumps(answer).encode()
    return post


def _handler(auth: AuthServer):
    routes = {"/token": auth.token, "/devicecode": auth.device_code, "/introspect": auth.introspect}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
            route = routes.get(self.path.split("?", 1)[0])
            status, answer = route(form) if route else (404, {"error": "not_found"})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):      # quiet
            pass

    return Handler


def dovecot_oauth2_conf(d, auth: AuthServer, mechanisms: str = "xoauth2 oauthbearer") -> str:
    """Dovecot config lines (appended to make_dovecot_conf's) for an `oauth2` passdb that
    asks `auth`'s introspection endpoint; writes `d/dovecot-oauth2.conf.ext`."""
    ext = d / "dovecot-oauth2.conf.ext"
    ext.write_text(f"introspection_mode = post\nintrospection_url = {auth.base}/introspect\n"
                   "force_introspection = yes\nusername_attribute = username\n"
                   "active_attribute = active\nactive_value = true\n")
    return (f"auth_mechanisms = plain login {mechanisms}\n"
            f"passdb {{\n  driver = oauth2\n  mechanisms = {mechanisms}\n  args = {ext}\n}}\n")
