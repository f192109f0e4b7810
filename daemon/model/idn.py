"""daemon.idn under its old name, for the modules that import it from here.

The IDN helpers live in daemon.idn, outside this package, so that daemon.config (which
checks `[smtp] domains` with them) does not run this package's __init__ and define every
model dataclass at each start of a read-only command (issue 16). New code imports daemon.idn.
"""
from daemon.idn import (HELD, SmtpAddress, address_domain, canonical_address, canonical_domain,  # noqa: F401
                        domain_key, domain_keys, header_needs_utf8, plan_utf8, smtp_address)
