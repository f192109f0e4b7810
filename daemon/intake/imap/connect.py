"""Opening an IMAP session for one [[imap]] account: TLS, LOGIN or SASL OAuth 2.0, closing.

`check_security` refuses plaintext except on loopback; `open_client` connects with implicit
TLS or STARTTLS (never falling back to plain); `log_in` sends LOGIN with the password, or
AUTHENTICATE with an access token by the SASL mechanism the server offers (OAUTHBEARER or
XOAUTH2, see daemon.oauth2.pick_mechanism). `close` logs out or drops the socket.
"""
from __future__ import annotations

import ssl

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from daemon.config import ImapAccount
from daemon.errors import ConfigError
from daemon.oauth2 import pick_mechanism

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def check_security(account: ImapAccount) -> None:
    """ConfigError unless `security` is tls, starttls, or none on a loopback host."""
    if account.security not in ("tls", "starttls", "none"):
        raise ConfigError(f"imap {account.name}: security must be tls, starttls or none")
    if account.security == "none" and account.host not in LOOPBACK:
        raise ConfigError(f"imap {account.name}: security 'none' is refused unless host is loopback")


def tls_context(account: ImapAccount) -> ssl.SSLContext:
    """Certificate and host name verification on, unless verify_tls = false."""
    ctx = ssl.create_default_context(cafile=account.ca_file or None)
    if not account.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_client(account: ImapAccount, timeout: SocketTimeout) -> IMAPClient:
    """A connected (not yet authenticated) client; STARTTLS raises when not offered."""
    a = account
    ctx = tls_context(a) if a.security != "none" else None
    client = IMAPClient(a.host, port=a.port, ssl=a.security == "tls", ssl_context=ctx, timeout=timeout)
    if a.security == "starttls":
        try:
            client.starttls(ctx)
        except BaseException:
            close(client, graceful=False)
            raise
    return client


def log_in(client: IMAPClient, account: ImapAccount, *, password: str = "", access_token: str = "") -> str:
    """LOGIN with `password`, or SASL with `access_token`; returns the mechanism used.
    LoginError when refused or when the server offers no OAuth mechanism."""
    if not access_token:
        client.login(account.username, password)
        return "LOGIN"
    caps = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
    mech = pick_mechanism(c[5:] for c in caps if c.startswith("AUTH="))
    if mech is None:
        raise LoginError(f"{account.host} offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2")
    if mech == "OAUTHBEARER":
        client.oauthbearer_login(account.username, access_token)
    else:
        client.oauth2_login(account.username, access_token)
    return mech


def close(client: IMAPClient, graceful: bool) -> None:
    """LOGOUT when `graceful`, else (or when that fails) shut the socket down."""
    try:
        if graceful:
            client.logout()
            return
    except (OSError, IMAPClient.Error):
        pass
    try:
        client.shutdown()
    except (OSError, IMAPClient.Error):
        pass
