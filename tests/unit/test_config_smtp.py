"""The [smtp] keys added against hostile clients: validated at load with the key's name."""
from __future__ import annotations

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from tests.conftest import write_site_config


def with_smtp(tmp_path, lines: str):
    cfg = write_site_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('domains = ["example.com", "helpdesk.test"]\n',
                                           'domains = ["example.com", "helpdesk.test"]\n' + lines))
    return load_config(str(cfg))


def test_defaults_cap_sessions_below_the_fd_limit_and_say_nothing_about_the_software(tmp_path):
    smtp = with_smtp(tmp_path, "").smtp
    assert smtp.max_sessions == 500 and smtp.max_messages_per_ip_minute == 1200
    assert smtp.recipients == () and smtp.hostname == "" and smtp.tls_cert == smtp.tls_key == ""


@pytest.mark.parametrize("lines, key", [
    ("max_sessions = 0\n", "smtp.max_sessions"),
    ("max_messages_per_ip_minute = -1\n", "smtp.max_messages_per_ip_minute"),
    ('tls_cert = "cert.pem"\n', "smtp.tls_cert / smtp.tls_key"),
    ('recipients = ["help@elsewhere.test"]\n', "smtp.recipients"),
    ('recipients = "support@example.com"\n', "smtp.recipients"),
])
def test_bad_values_name_the_key(tmp_path, lines, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        with_smtp(tmp_path, lines)


def test_recipients_lowercased_and_tls_paths_relative_to_the_site_file(tmp_path):
    smtp = with_smtp(tmp_path, 'recipients = ["Support@Example.com"]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n').smtp
    assert smtp.recipients == ("support@example.com",)
    assert smtp.tls_cert == str(tmp_path / "c.pem") and smtp.tls_key == str(tmp_path / "k.pem")
