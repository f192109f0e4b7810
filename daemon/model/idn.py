"""daemon.idn under its old name, for the modules that import it from here.

The IDN helpers live in daemon.idn, outside this package, so that daemon.config (which
checks `[smtp] domains` with them) does not run this package's __init__ and define every
model dataclass at each start of a read-only command (issue 16); the SMTP command addresses
are daemon.smtp_address's. New code imports those two.
"""
from daemon.idn import (address_domain, canonical_address, canonical_domain, domain_key,  # noqa: F401
                        domain_keys)
from daemon.smtp_address import HELD, SmtpAddress, header_needs_utf8, plan_utf8, smtp_address  # noqa: F401
