"""`helpdesk init DIR`: a site directory that works on its own, wherever helpdeskd came from.

Writes DIR/config.toml (only the keys an admin usually changes, commented; `state_dir`,
`[paths] rules` and `templates` inside DIR) and copies the shipped rules/ and templates/
(daemon/shipped.py) to DIR/rules/ and DIR/templates/. Existing files are never overwritten
unless `force`; the refusal lists them. Edge module: it only writes files.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from daemon import shipped
from daemon.errors import HelpdeskError

SITE_CONFIG = """\
# helpdeskd site configuration, made by `helpdesk init`.
#
# Only the keys an admin usually changes are here; every other key keeps its default. The
# full list, with what each key does, is the shipped config.toml:
#   {defaults}
# Relative paths are relative to this file. Secrets never go here: IMAP and relay
# passwords come from the environment (*_env keys) or systemd credentials (*_credential).

[helpdesk]
address = "support@example.com"   # where users write; acknowledgements come from it
name = "Example Service Desk"      # display name on every mail we send
ticket_prefix = "HD"               # subject tag [HD-42]; letters only
state_dir = {state_dir}{state_pad}# database, spool, queue, attachments (keep it, back it up)

[database]
url = ""                           # empty: SQLite in state_dir; or postgresql+psycopg://user@host/db

[queue]
backend = "sqlite"                 # sqlite (serve sends the mail) | redis (+ helpdesk worker)
url = ""                           # redis://127.0.0.1:6379/0 for redis

[smtp]                             # SMTP intake (an MTA relays to it, or users' clients)
enabled = true                     # false: take mail only from IMAP or `helpdesk ingest`
host = "127.0.0.1"                 # listen address; 0.0.0.0 for every interface
port = 2525                        # a second serve on the same port refuses to start
domains = ["example.com"]          # recipient domains accepted; anything else gets 550

[outbound]                         # the relay for every mail we send
host = "127.0.0.1"                 # your MTA or smarthost
port = 25                          # 587 with starttls, 465 with tls
security = "none"                  # starttls | tls | none (plaintext: loopback only)
username = ""                      # empty: no SMTP AUTH
password_env = ""                  # environment variable holding the relay password, or
password_credential = ""           # a systemd credential (LoadCredential=) holding it

[reports]                          # the continual improvement report mailed to managers (`helpdesk report`
                                   # prints it at any time)
to = []                            # their addresses, e.g. ["it-manager@example.com"]; empty: not mailed
schedule = "weekly"                # weekly (Monday to Sunday, sent Mondays) | monthly (sent on the 1st) | daily
hour = 7                           # the UTC hour from which that period's report is sent (once per period)

[paths]
rules = "rules"                    # the YAML rules: queues, agents, routing, SLA (copied from the defaults)
templates = "templates"            # the Jinja2 mail templates (copied from the defaults)

# One [[imap]] table per mailbox to take mail from (optional):
# [[imap]]
# name = "support"
# host = "imap.example.com"
# username = "support@example.com"
# password_env = "HELPDESK_IMAP_PASSWORD"   # or password_credential = "imap-support"
# folder = "INBOX"
"""


class InitError(HelpdeskError):
    """Raised when `helpdesk init` would overwrite files (without --force) or cannot write."""


@dataclass(frozen=True)
class SiteDir:
    """What `init_site` made."""

    root: Path
    config: Path
    rule_files: int
    template_files: int


def render_site_config(state_dir: str = "var") -> str:
    """The text of DIR/config.toml."""
    value = json.dumps(state_dir)                   # a TOML basic string
    return SITE_CONFIG.format(defaults=shipped.shipped_config(), state_dir=value,
                              state_pad=" " * max(1, 19 - len(value)))


def _files(tree: Path) -> list[Path]:
    return sorted(p.relative_to(tree) for p in tree.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _plan(root: Path) -> dict[Path, Path | None]:
    """target -> shipped source (None: the config text)."""
    plan: dict[Path, Path | None] = {root / "config.toml": None}
    for name, tree in (("rules", shipped.shipped_rules()), ("templates", shipped.shipped_templates())):
        for rel in _files(tree):
            plan[root / name / rel] = tree / rel
    return plan


def init_site(root: Path, *, force: bool = False, state_dir: str = "var") -> SiteDir:
    """Write the site directory; refuse (InitError listing them) to overwrite files unless `force`."""
    root = root.absolute()
    plan = _plan(root)
    existing = [p for p in plan if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise InitError(f"{root}: would overwrite {shown}; use --force to replace them with the shipped files")
    try:
        for target, source in plan.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if source is None:
                target.write_text(render_site_config(state_dir), encoding="utf-8")
            else:
                shutil.copyfile(source, target)
    except OSError as exc:
        raise InitError(f"{exc.filename or root}: cannot write: {exc.strerror or exc}") from exc
    rules = sum(1 for t in plan if t.is_relative_to(root / "rules"))
    return SiteDir(root, root / "config.toml", rules, len(plan) - 1 - rules)


def next_steps(site: SiteDir) -> str:
    """What to tell the admin after `init`."""
    cfg = site.config
    return "\n".join([
        f"made {site.root}: config.toml, rules/ ({site.rule_files} files), templates/ ({site.template_files} files)",
        "next:",
        f"  1. edit {cfg}: [helpdesk] address, [smtp] domains, the [outbound] relay",
        f"     (every other key, with its default: {shipped.shipped_config()})",
        f"  2. helpdesk --config {cfg} check",
        f"  3. helpdesk --config {cfg} serve        (or export HELPDESK_CONFIG={cfg})",
    ])
