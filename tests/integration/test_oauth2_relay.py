"""The outbound relay with auth = "oauth2": a real aiosmtpd relay on loopback whose
AUTH XOAUTH2 / OAUTHBEARER handler asks the stand-in introspection endpoint about the token."""
from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from daemon.mailer import RcptResult, Relay, RelaySettings
from daemon.oauth2 import OAuth2Settings, TokenSource
from daemon.oauth2_store import TokenStore, read_statuses, token_alerts
from tests.conftest import free_port
from tests.integration.oauth_server import AuthServer, Clock
from tests.integration.test_outbox_relay import FROM, RAW, Sink, SinkHandler

USER = "support@example.com"


class OAuthSinkHandler(SinkHandler):
    """A SinkHandler whose relay takes SASL XOAUTH2 and OAUTHBEARER, checking the bearer
    token at `introspect_url` (RFC 7662) and that it belongs to the SASL user."""

    introspect_url = ""

    def __init__(self):
        super().__init__()
        self.logins: list[tuple[str, str]] = []

    async def auth_XOAUTH2(self, server, args):             # noqa: N802 - aiosmtpd's naming
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server, args):         # noqa: N802
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server, args, mech):
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        head, *rest = blob.decode().split("\x01")
        if mech == "XOAUTH2":
            user = head.removeprefix("user=")
        else:                                                   # gs2 header "n,a=USER,"
            user = head.split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
        fields = dict(kv.split("=", 1) for kv in rest if "=" in kv)
        token = fields.get("auth", "").removeprefix("Bearer ")
        if self._introspect(token) == user:
            self.logins.append((mech, user))
            return AuthResult(success=True)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication unsuccessful")

    def _introspect(self, token: str) -> str | None:
        data = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.introspect_url, data=data, timeout=5) as resp:
            answer = json.loads(resp.read())
        return answer.get("username") if answer.get("active") else None


class OAuthSink(Sink):
    """A started aiosmtpd relay on a free loopback port offering only `offered` mechanisms."""

    def __init__(self, auth: AuthServer, offered=("XOAUTH2",)):
        self.handler = OAuthSinkHandler()
        self.handler.introspect_url = auth.base + "/introspect"
        self.port = free_port()
        hidden = ["PLAIN", "LOGIN"] + [m for m in ("XOAUTH2", "OAUTHBEARER") if m not in offered]
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, auth_require_tls=False,
                                     auth_exclude_mechanism=hidden)


@pytest.fixture
def auth():
    server = AuthServer().start()
    yield server
    server.stop()


def make_relay(port, auth, tmp_path, clock, env):
    settings = OAuth2Settings(key="outbound", oauth2_token_url=auth.token_url, oauth2_client_id="helpdesk",
                              oauth2_client_secret_env="HD_SECRET", oauth2_refresh_token_env="HD_RT")
    tokens = TokenSource(settings, TokenStore(tmp_path, "outbound"), environ=env, clock=clock, rand=lambda: 0.0)
    return Relay(RelaySettings(port=port, username=USER, timeout=5, auth="oauth2", oauth2=settings), tokens=tokens)


@pytest.mark.parametrize("offered, used", [(("XOAUTH2",), "XOAUTH2"), (("XOAUTH2", "OAUTHBEARER"), "OAUTHBEARER")])
def test_relay_with_oauth2_sends_and_refreshes_a_refused_token(auth, tmp_path, offered, used):
    clock = Clock()
    env = {"HD_SECRET": "client-secret", "HD_RT": auth.issue_refresh_token(USER)}
    with OAuthSink(auth, offered) as sink:
        relay = make_relay(sink.port, auth, tmp_path, clock, env)
        assert relay.send(FROM, ["ann@example.org"], RAW) == [RcptResult("ann@example.org", "sent", 250, "")]
        assert sink.handler.logins == [(used, USER)] and auth.grants == ["refresh_token"]
        assert relay.send(FROM, ["bob@example.org"], RAW)[0].outcome == "sent"
        assert auth.grants == ["refresh_token"]                     # the cached token is reused
        auth.expire_all()                                           # revoked early by the provider
        assert relay.send(FROM, ["cy@example.org"], RAW)[0].outcome == "sent"
        assert auth.grants == ["refresh_token", "refresh_token"] and len(sink.handler.logins) == 3
        assert [m[2] for m in sink.handler.wait_for(3)] == [RAW] * 3


def test_relay_revoked_refresh_token_holds_mail_and_alerts(auth, tmp_path):
    clock = Clock()
    env = {"HD_SECRET": "client-secret", "HD_RT": auth.issue_refresh_token(USER)}
    with OAuthSink(auth) as sink:
        relay = make_relay(sink.port, auth, tmp_path, clock, env)
        assert relay.send(FROM, ["ann@example.org"], RAW)[0].outcome == "sent"
        auth.revoke_all()
        auth.expire_all()
        (result,) = relay.send(FROM, ["bob@example.org"], RAW)
        assert result.outcome == "temp" and "invalid_grant" in result.reason and "rt-" not in result.reason
        assert len(auth.grants) == 2
        for _ in range(5):                                          # every later send: no endpoint call
            assert relay.send(FROM, ["bob@example.org"], RAW)[0].outcome == "temp"
        assert len(auth.grants) == 2
    (status,) = read_statuses(tmp_path)
    assert list(token_alerts(status, clock())) == ["oauth2 outbound: token refresh failing"]


def test_relay_settings_build_their_own_token_source(tmp_path):
    settings = OAuth2Settings(key="outbound", oauth2_token_url="http://127.0.0.1:9/token", oauth2_client_id="helpdesk")
    relay = Relay(RelaySettings(username=USER, auth="oauth2", oauth2=settings, state_dir=tmp_path))
    assert relay.tokens is not None and relay.tokens.store.path == tmp_path / "oauth2" / "outbound.json"
