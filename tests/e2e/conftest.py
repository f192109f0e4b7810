"""e2e tests reuse the real Dovecot fixtures of the integration suite."""
from tests.integration.conftest import dovecot, mailbox  # noqa: F401  (pytest fixtures)
