"""IMAP intake with OAuth 2.0 against a real Dovecot whose `oauth2` passdb asks a local
introspection endpoint (tests/integration/oauth_server.py) whether a token is active.

Token lifetimes run on a settable clock handed to the token source; where Dovecot must see
an expired token, the endpoint reports it inactive. Nothing waits for a token to expire.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest

from daemon.cli import main
from daemon.config import HealthSection
from daemon.health import Health
from daemon.intake.imap import imap_tokens
from daemon.oauth2_store import read_statuses, token_alerts
from daemon.spool import Spool
from tests.integration.oauth_server import AuthServer, Clock, dovecot_oauth2_conf
from tests.integration.test_imap_intake import Harness, account, idle_again, msg, unseen, wait_until
from tests.unit.test_health import FakeApp

SECRET = {"HD_SECRET": "client-secret"}


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path, Spool(tmp_path / "spool").ensure(), f"sqlite:///{tmp_path / 'state.db'}")
    yield h
    h.close()


@pytest.fixture
def auth():
    server = AuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_dovecot(dovecot_factory, auth):
    """make(mechanisms): a private Dovecot offering those SASL mechanisms by its oauth2 passdb."""
    dirs: list[Path] = []

    def make(mechanisms: str = "xoauth2 oauthbearer"):
        d = Path(tempfile.mkdtemp(prefix="hd-oauth2-"))      # readable by dovecot's auth user
        os.chmod(d, 0o755)
        dirs.append(d)
        return dovecot_factory(dovecot_oauth2_conf(d, auth, mechanisms) + "auth_failure_delay = 0\n",
                               auth_penalty=False)

    yield make
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def clock():
    return Clock()


def oauth_account(server, auth, user, *, refresh_token_env="HD_RT", name="support"):
    return account(server, user, name=name, password_env="", auth="oauth2", oauth2_token_url=auth.token_url,
                   oauth2_client_id="helpdesk", oauth2_client_secret_env="HD_SECRET",
                   oauth2_refresh_token_env=refresh_token_env)


def start(harness, acct, clock, env, **kw):
    tokens = imap_tokens(harness.root / "state", acct, environ=env, clock=clock, rand=lambda: 0.0)
    return harness.start(harness.poller(acct, environ=env, tokens=tokens, **kw))


def store_file(harness) -> dict:
    (status,) = read_statuses(harness.root / "state")
    return status


# ----------------------------------------------------------------- login by what is offered
@pytest.mark.parametrize("offered, used", [("xoauth2", "XOAUTH2"), ("oauthbearer", "OAUTHBEARER"),
                                           ("xoauth2 oauthbearer", "OAUTHBEARER")])
def test_login_by_the_mechanism_the_server_offers(oauth_dovecot, auth, harness, clock, offered, used):
    server = oauth_dovecot(offered)
    user = server.add_user()
    c = server.client(user)
    c.append("INBOX", msg(f"o-{used}"))
    first = auth.issue_refresh_token(user)
    p = start(harness, oauth_account(server, auth, user), clock, {**SECRET, "HD_RT": first})
    harness.wait_entries(1)
    idle_again(p)
    assert harness.message_ids() == [f"o-{used}"] and unseen(c) == []
    assert server.log_count(f"Login: user=<{user}>, method={used}") == 1
    assert auth.grants == ["refresh_token"] and auth.introspections == 1
    assert p.status().token_expires_at == "2027-01-15T09:00:00+00:00"
    c.logout()


def test_server_without_oauth_mechanisms_is_an_alert_not_a_loop(dovecot, auth, harness, clock, caplog):
    user = dovecot.add_user()
    p = start(harness, oauth_account(dovecot, auth, user), clock, {**SECRET, "HD_RT": auth.issue_refresh_token(user)})
    wait_until(lambda: p.status().state == "auth_failed", 10, "auth_failed")
    assert "neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2" in p.status().last_error
    assert "ALERT imap support" in caplog.text


def test_client_credentials_grant_logs_in(oauth_dovecot, auth, harness, clock):
    server = oauth_dovecot()
    user = server.add_user()
    auth.app_users["helpdesk"] = user                     # the application may read this mailbox
    c = server.client(user)
    c.append("INBOX", msg("cc1"))
    p = start(harness, oauth_account(server, auth, user, refresh_token_env=""), clock, dict(SECRET))
    harness.wait_entries(1)
    idle_again(p)
    assert auth.grants == ["client_credentials"] and store_file(harness)["grant"] == "client_credentials"
    c.logout()


# ----------------------------------------------------------------- expiry and refresh
def test_token_expiry_mid_idle_refreshes_and_intake_resumes(oauth_dovecot, auth, harness, clock):
    server = oauth_dovecot()
    user = server.add_user()
    p = start(harness, oauth_account(server, auth, user), clock, {**SECRET, "HD_RT": auth.issue_refresh_token(user)})
    idle_again(p)
    (old,) = auth.active_access_tokens(user)
    logins = p.status().logins
    auth.expire(old)                       # from now on Dovecot hears "inactive" for the old token
    clock.advance(3300)                    # ... and our clock says it is due: leave IDLE, log in anew
    wait_until(lambda: p.status().logins == logins + 1 and p.status().state == "idle", 10, "re-login")
    c = server.client(user)
    c.append("INBOX", msg("after-refresh"))
    harness.wait_entries(1)
    assert harness.message_ids() == ["after-refresh"]
    assert auth.grants == ["refresh_token", "refresh_token"]
    assert p.status().last_error is None and p.status().token_expires_at == "2027-01-15T09:55:00+00:00"
    assert server.log_count(f"Login: user=<{user}>, method=OAUTHBEARER") == 2
    c.logout()


def test_token_endpoint_down_at_renewal_keeps_the_session(oauth_dovecot, auth, harness, clock):
    server = oauth_dovecot()
    user = server.add_user()
    p = start(harness, oauth_account(server, auth, user), clock, {**SECRET, "HD_RT": auth.issue_refresh_token(user)})
    idle_again(p)
    auth.fail_next = [(503, {"error": "temporarily_unavailable"})]
    idles = p.status().idles
    clock.advance(3300)                                    # due, but the endpoint is down
    wait_until(lambda: len(auth.grants) == 2 and p.status().idles > idles, 10, "failed renewal, IDLE again")
    c = server.client(user)
    c.append("INBOX", msg("still-flowing"))               # the old session still takes mail
    harness.wait_entries(1)
    assert p.status().logins == 1 and p.status().connects == 1 and p.status().state in ("idle", "polling")
    assert list(token_alerts(store_file(harness), clock())) == ["oauth2 imap[support]: token refresh failing"]
    clock.advance(15)                                      # the endpoint's backoff is over
    wait_until(lambda: p.status().logins == 2 and p.status().state == "idle", 10, "renewed and logged in")
    assert token_alerts(store_file(harness), clock()) == {}
    c.logout()


def test_token_refused_after_a_disconnect_is_refreshed_at_once(oauth_dovecot, auth, harness, clock):
    server = oauth_dovecot("xoauth2")
    user = server.add_user()
    p = start(harness, oauth_account(server, auth, user), clock, {**SECRET, "HD_RT": auth.issue_refresh_token(user)})
    idle_again(p)
    auth.expire_all()                      # revoked early by the provider (password change, policy)
    server.doveadm("kick", user)           # and the session is cut: our clock says the token is good
    wait_until(lambda: p.status().connects >= 2 and p.status().state == "idle", 10, "back in IDLE")
    assert auth.grants == ["refresh_token", "refresh_token"]
    assert p.status().state == "idle" and "auth" not in (p.status().last_error or "").lower()
    c = server.client(user)
    c.append("INBOX", msg("after-kick"))
    harness.wait_entries(1)
    c.logout()


# ----------------------------------------------------------------- rotation and restarts
def test_rotated_refresh_token_is_stored_and_survives_a_restart(oauth_dovecot, auth, harness, clock):
    server = oauth_dovecot()
    user = server.add_user()
    first = auth.issue_refresh_token(user)
    env = {**SECRET, "HD_RT": first}
    acct = oauth_account(server, auth, user)
    p = start(harness, acct, clock, env)
    idle_again(p)
    harness.halt(p)
    path = harness.root / "state" / "oauth2" / "imap-support.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (rotated,) = auth.refresh_tokens                      # the server holds exactly one: ours
    assert rotated != first and f'"refresh_token": "{rotated}"' in path.read_text()
    p2 = start(harness, acct, clock, env, owner="daemon-2")    # a restarted daemon, the env unchanged
    idle_again(p2)
    assert len(auth.grants) == 2 and first not in auth.refresh_tokens
    assert store_file(harness)["refreshes"] == 2 and store_file(harness).get("last_error") is None


def test_revoked_refresh_token_alerts_backs_off_and_recovers_by_login(oauth_dovecot, auth, harness, clock, caplog,
                                                                      tmp_path):
    server = oauth_dovecot()
    user = server.add_user()
    p = start(harness, oauth_account(server, auth, user), clock, {**SECRET, "HD_RT": auth.issue_refresh_token(user)},
              auth_backoff=0.2, auth_backoff_cap=0.4)
    idle_again(p)
    auth.revoke_all()
    auth.expire_all()
    server.doveadm("kick", user)
    wait_until(lambda: p.status().state == "auth_failed", 10, "auth_failed")
    assert "invalid_grant" in p.status().last_error
    assert "ALERT oauth2 imap[support]: token endpoint refused: invalid_grant" in caplog.text
    assert list(token_alerts(store_file(harness), clock())) == ["oauth2 imap[support]: token refresh failing"]
    # health: the status file carries the ALERT (and `helpdesk status` exits 1 on it)
    app = FakeApp([p], config=SimpleNamespace(state_dir=harness.root / "state", health=HealthSection(0, 0, 60, 0)))
    health = Health(app, tmp_path / "status.json", clock=iter(range(10**6)).__next__)
    health.tick()
    assert "oauth2 imap[support]: token refresh failing" in health.alerted
    # no tight loop: the poller keeps retrying, the token endpoint is not asked again
    grants, connects = len(auth.grants), p.status().connects
    wait_until(lambda: p.status().connects >= connects + 2, 10, "two more attempts")
    assert len(auth.grants) == grants
    # the admin signs in again; the running poller picks the new refresh token up
    login_by_device_code(auth, harness, server, user)
    wait_until(lambda: p.status().state == "idle", 10, "idle after the new login")
    health.tick()
    assert not any(a.startswith("oauth2") for a in health.alerted)


def login_by_device_code(auth, harness, server, user):
    """`helpdesk oauth2 login support` over HTTP against the stand-in server."""
    auth.device_interval = 0.01
    auth.on_device_poll = lambda code, polls: auth.approve(code, user)
    site = harness.root / "site.toml"
    site.write_text(f'[helpdesk]\nstate_dir = "{harness.root / "state"}"\n[[imap]]\nname = "support"\n'
                    f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nusername = "{user}"\n'
                    f'auth = "oauth2"\noauth2_token_url = "{auth.token_url}"\noauth2_client_id = "helpdesk"\n')
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--config", str(site), "oauth2", "login", "support"]) == 0
    assert "https://login.example/device" in out.getvalue() and "refresh token is stored" in out.getvalue()
