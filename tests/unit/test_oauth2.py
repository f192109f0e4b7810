"""OAuth 2.0 token client, token store and device-code login, against the stand-in
authorization server called in-process (no sockets; the clock is the test's)."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.oauth2 import (LOGIN_SEED, OAuth2Error, OAuth2Settings, TokenSource, parse_token_answer, pick_mechanism,
                           refresh_at, refreshes_per_day, sasl_response)
from daemon.oauth2_config import device_url
from daemon.oauth2_login import device_login
from daemon.oauth2_store import TokenStore, read_statuses, status_line, token_alerts
from daemon.health import status_text
from tests.integration.oauth_server import AuthServer, Clock, direct_post

USER = "support@example.com"
URL = "http://127.0.0.1:9/token"


def settings(**kw) -> OAuth2Settings:
    values = dict(key="imap[support]", oauth2_token_url=URL, oauth2_client_id="helpdesk",
                  oauth2_client_secret_env="HD_SECRET", oauth2_refresh_token_env="HD_RT",
                  oauth2_device_url="http://127.0.0.1:9/devicecode")
    values.update(kw)
    return OAuth2Settings(**values)


@pytest.fixture
def auth():
    return AuthServer()


@pytest.fixture
def clock():
    return Clock()


def source(auth, clock, tmp_path, rt: str | None = None, **kw) -> TokenSource:
    env = {"HD_SECRET": "client-secret"}
    if rt:
        env["HD_RT"] = rt
    return TokenSource(settings(**kw), TokenStore(tmp_path, "imap[support]"), environ=env, post=direct_post(auth),
                       clock=clock, rand=lambda: 0.0)


# ----------------------------------------------------------------- pure helpers
def test_mechanism_is_whichever_the_server_offers():
    assert pick_mechanism(["PLAIN", "XOAUTH2"]) == "XOAUTH2"
    assert pick_mechanism(["oauthbearer"]) == "OAUTHBEARER"
    assert pick_mechanism(["XOAUTH2", "OAUTHBEARER"]) == "OAUTHBEARER"          # the standard one first
    assert pick_mechanism(["PLAIN", "LOGIN"]) is None


def test_sasl_first_messages():
    assert sasl_response("XOAUTH2", USER, "tok") == f"user={USER}\x01auth=Bearer tok\x01\x01"
    assert sasl_response("OAUTHBEARER", "a,b=c@x", "tok", "imap.x", 993) == \
        "n,a=a=2Cb=3Dc@x,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"


def test_refresh_policy_and_refreshes_per_day():
    assert refresh_at(1000.0, 3600) == 1000.0 + 3300
    assert refresh_at(0.0, 60) == 30.0                                  # short-lived: half way
    assert refreshes_per_day(3600) == pytest.approx(26.18, abs=0.01)
    assert refreshes_per_day(5400) == pytest.approx(16.94, abs=0.01)    # Microsoft's 60-90 min upper end


@pytest.mark.parametrize("status, body, permanent, code", [
    (400, {"error": "invalid_grant"}, True, "invalid_grant"),
    (401, {"error": "invalid_client"}, True, "invalid_client"),
    (500, {"error": "invalid_grant"}, False, "invalid_grant"),         # a 5xx is never final
    (429, {"error": "too_many_requests"}, False, "too_many_requests"),
    (503, None, False, "http_503"),
])
def test_refusals_are_permanent_or_transient(status, body, permanent, code):
    raw = b"<html>busy</html>" if body is None else json.dumps(body).encode()
    with pytest.raises(OAuth2Error) as info:
        parse_token_answer(status, raw)
    assert (info.value.permanent, info.value.code) == (permanent, code)


def test_a_grant_is_parsed_without_trusting_odd_values():
    g = parse_token_answer(200, b'{"access_token": "tok-xyz", "expires_in": "120", "refresh_token": ""}')
    assert (g.access_token, g.expires_in, g.refresh_token) == ("tok-xyz", 120.0, None)
    assert parse_token_answer(200, b'{"access_token": "a", "expires_in": true}').expires_in == 3600.0
    assert "tok-xyz" not in repr(g)


def test_device_url_is_derived_for_microsoft_and_google():
    assert device_url("https://login.microsoftonline.com/t/oauth2/v2.0/token") == \
        "https://login.microsoftonline.com/t/oauth2/v2.0/devicecode"
    assert device_url("https://oauth2.googleapis.com/token") == "https://oauth2.googleapis.com/device/code"


# ----------------------------------------------------------------- token source
def test_cached_until_due_then_refreshed_and_rotation_kept(auth, clock, tmp_path):
    first = auth.issue_refresh_token(USER)
    src = source(auth, clock, tmp_path, first)
    t1 = src.access_token()
    assert t1.fresh and t1.expires_at == clock() + 3600 and auth.grants == ["refresh_token"]
    assert src.access_token().value == t1.value and not src.access_token().fresh and len(auth.grants) == 1
    assert first not in auth.refresh_tokens                             # the server rotated it away ...
    stored = src.store.refresh_token()
    assert stored in auth.refresh_tokens                                # ... and we kept the new one
    clock.advance(3299)
    assert not src.due() and src.access_token().value == t1.value
    clock.advance(1)
    assert src.due()
    t2 = src.access_token()
    assert t2.fresh and t2.value != t1.value and len(auth.grants) == 2
    assert src.store.refresh_token() != stored and src.store.refresh_token() in auth.refresh_tokens


def test_a_restart_uses_the_stored_refresh_token_not_the_first_one(auth, clock, tmp_path):
    first = auth.issue_refresh_token(USER)
    source(auth, clock, tmp_path, first).access_token()
    again = source(auth, clock, tmp_path, first)                        # the env still holds the first one
    assert again.access_token().fresh and auth.grants == ["refresh_token", "refresh_token"]


def test_a_new_configured_refresh_token_replaces_the_stored_chain(auth, clock, tmp_path):
    source(auth, clock, tmp_path, auth.issue_refresh_token(USER)).access_token()
    auth.revoke_all()                                                   # the chain dies ...
    fresh = auth.issue_refresh_token(USER)                              # ... the admin sets a new first token
    src = source(auth, clock, tmp_path, fresh)
    assert src.access_token().fresh and fresh not in auth.refresh_tokens
    assert src.store.refresh_token() in auth.refresh_tokens
    gone = TokenSource(settings(), src.store, environ={"HD_SECRET": "client-secret"}, post=direct_post(auth),
                       clock=clock)                                     # the first one removed: stored one used
    assert gone.access_token().fresh and len(auth.grants) == 3


def test_endpoint_down_keeps_handing_out_a_token_that_still_lives(auth, clock, tmp_path):
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    t1 = src.access_token()
    clock.advance(3300)
    auth.fail_next = [(503, {})] * 5
    assert not src.renew()
    t = src.access_token()                                              # e.g. a reconnect, a relay send
    assert t.value == t1.value and not t.fresh and len(auth.grants) == 2
    clock.advance(300)                                                  # expired: no more
    with pytest.raises(OAuth2Error):
        src.access_token()


def test_a_refused_token_is_dropped_and_refreshed(auth, clock, tmp_path):
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    t1 = src.access_token()
    src.invalidate(t1)
    assert src.access_token().value != t1.value and len(auth.grants) == 2


def test_transient_failure_backs_off_without_asking_again(auth, clock, tmp_path):
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    auth.fail_next = [(503, {"error": "temporarily_unavailable"})]
    with pytest.raises(OAuth2Error) as info:
        src.access_token()
    assert not info.value.permanent and info.value.retry_at == clock() + 15      # 30 s, equal jitter, rand 0
    for _ in range(50):                                                 # a caller in a loop ...
        with pytest.raises(OAuth2Error):
            src.access_token()
    assert len(auth.grants) == 1                                        # ... never reaches the endpoint
    assert "token refresh failing" in " ".join(token_alerts(src.store.load(), clock()))
    clock.advance(15)
    assert src.access_token().fresh and len(auth.grants) == 2
    assert token_alerts(src.store.load(), clock()) == {}


def test_not_due_while_the_endpoint_backs_off_and_the_token_lives(auth, clock, tmp_path):
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    src.access_token()
    clock.advance(3300)
    auth.fail_next = [(503, {})]
    assert src.due() and not src.renew()                  # refresh ahead of expiry fails ...
    assert not src.due()                                  # ... so the session goes on, no retry storm
    clock.advance(15)
    assert src.due() and src.renew() and not src.due()    # the backoff is over: renewed
    auth.fail_next = [(503, {})] * 10
    clock.advance(3300)
    assert not src.renew()
    clock.advance(299)                                    # past expiry: due again, whatever the backoff
    assert src.due() and len(auth.grants) == 4          # 1 ok, 1 failed, 1 ok, 1 failed


def test_revoked_refresh_token_alerts_until_a_new_login(auth, clock, tmp_path):
    first = auth.issue_refresh_token(USER)
    src = source(auth, clock, tmp_path, first)
    src.access_token()
    auth.revoke_all()
    clock.advance(3300)
    with pytest.raises(OAuth2Error, match="invalid_grant") as info:
        src.access_token()
    assert info.value.permanent and info.value.retry_at == clock() + 150
    alerts = token_alerts(src.store.load(), clock())
    assert list(alerts) == ["oauth2 imap[support]: token refresh failing"]
    assert not src.access_token().fresh                                 # the old one lives 5 more minutes
    clock.advance(300)
    for _ in range(3):
        with pytest.raises(OAuth2Error):
            src.access_token()
    assert len(auth.grants) == 3                                        # asked once more, then backing off
    src.store.save_refresh_token(auth.issue_refresh_token(USER), clock(), seed=LOGIN_SEED)   # oauth2 login
    assert src.access_token().fresh and token_alerts(src.store.load(), clock()) == {}


def test_client_credentials_when_there_is_no_refresh_token(auth, clock, tmp_path):
    auth.app_users["helpdesk"] = USER
    src = source(auth, clock, tmp_path, oauth2_refresh_token_env="")
    assert src.access_token().fresh and auth.grants == ["client_credentials"]
    assert src.store.refresh_token() is None and src.store.load()["grant"] == "client_credentials"


def test_no_refresh_token_and_no_secret_names_the_keys(auth, clock, tmp_path):
    src = TokenSource(settings(oauth2_client_secret_env=""), TokenStore(tmp_path, "imap[support]"), environ={},
                      post=direct_post(auth), clock=clock)
    with pytest.raises(ConfigError, match=r"imap\[support\]\.oauth2_refresh_token_env"):
        src.access_token()
    src = TokenSource(settings(oauth2_client_secret_env="", oauth2_refresh_token_env=""), TokenStore(tmp_path, "x"),
                      environ={}, post=direct_post(auth), clock=clock)
    with pytest.raises(OAuth2Error, match="helpdesk oauth2 login"):
        src.access_token()
    assert auth.grants == []


# ----------------------------------------------------------------- store and status
def test_store_is_private_atomic_and_status_hides_the_token(auth, clock, tmp_path):
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    src.access_token()
    path = tmp_path / "oauth2" / "imap-support.json"
    assert src.store.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["imap-support.json", "imap-support.lock"]
    statuses = read_statuses(tmp_path)
    assert len(statuses) == 1 and "refresh_token" not in statuses[0]
    assert src.store.refresh_token() not in json.dumps(statuses)
    line = status_line(statuses[0])
    assert line == ("oauth2 imap[support]: access token expires 2027-01-15T09:00:00+00:00 · refreshed "
                    "2027-01-15T08:00:00+00:00 (1 so far)")


def test_refresh_token_near_its_end_of_life_alerts(auth, clock, tmp_path):
    auth.refresh_expires_in = 30 * 86400
    src = source(auth, clock, tmp_path, auth.issue_refresh_token(USER))
    src.access_token()
    assert token_alerts(src.store.load(), clock()) == {}
    clock.advance(24 * 86400)
    alerts = token_alerts(src.store.load(), clock())
    assert list(alerts) == ["oauth2 imap[support]: refresh token near its end"]
    assert "helpdesk oauth2 login" in alerts["oauth2 imap[support]: refresh token near its end"]


def test_unreadable_store_names_the_file(tmp_path):
    store = TokenStore(tmp_path, "outbound")
    store.path.parent.mkdir()
    store.path.write_text("{not json")
    with pytest.raises(ConfigError, match="outbound.json: unreadable OAuth 2.0 state"):
        store.refresh_token()


# ----------------------------------------------------------------- device-code login
def test_device_login_prints_url_and_code_polls_and_stores(auth, clock, tmp_path):
    auth.on_device_poll = lambda code, polls: auth.approve(code, USER) if polls == 3 else None
    lines, sleeps = [], []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.advance(seconds)

    store = TokenStore(tmp_path, "imap[support]")
    device_login(settings(), store, out=lines.append, environ={"HD_SECRET": "client-secret"},
                 post=direct_post(auth), clock=clock, sleep=sleep)
    assert "https://login.example/device" in lines[0] and len(lines[0].rsplit(" ", 1)[1]) == 8
    assert sleeps == [5.0, 5.0, 10.0]                                   # slow_down adds 5 s
    assert store.refresh_token() in auth.refresh_tokens and str(store.path) in lines[-1]


def test_device_login_gives_up_when_the_code_expires(auth, clock, tmp_path):
    with pytest.raises(OAuth2Error, match="code expired"):
        device_login(settings(), TokenStore(tmp_path, "x"), out=lambda _l: None, environ={"HD_SECRET": "client-secret"},
                     post=direct_post(auth), clock=clock, sleep=clock.advance)
    assert not Path(tmp_path / "oauth2" / "x.json").exists()


def test_helpdesk_status_text_shows_each_accounts_token_and_its_alerts():
    snap = {"running": True, "state": "running", "pid": 7, "started_at": "2027-01-15T08:00:00+00:00",
            "database": "ok", "spool_depth": 0, "quarantined": 0, "worker": {}, "imap": [],
            "oauth2": [{"account": "imap[support]", "access_expires_at": 1_800_003_600.0,
                        "refreshed_at": 1_800_000_000.0, "refreshes": 3, "refresh_token_expires_at": 1_802_592_000.0},
                       {"account": "outbound", "last_error": "token endpoint refused: invalid_grant"}],
            "alerts": ["oauth2 outbound: token refresh failing"]}
    lines = status_text(snap).splitlines()
    assert "  oauth2 imap[support]: access token expires 2027-01-15T09:00:00+00:00 · refreshed " \
           "2027-01-15T08:00:00+00:00 (3 so far) · refresh token until 2027-02-14T08:00:00+00:00" in lines
    assert any(line.startswith("  oauth2 outbound: access token expires - ") and "invalid_grant" in line
               for line in lines)
    assert lines[-1] == "  ALERT oauth2 outbound: token refresh failing"
