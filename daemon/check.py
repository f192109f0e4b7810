"""`helpdesk check`: validate config, rules and templates; list every problem.

Each problem is one line `file:line: reason`. A node on a shared (PostgreSQL) database
without a configured signing key is a problem too (daemon.secrets.shared_key_problem). The config was already loaded by the caller
(a config error stops before this). Rule files must be valid YAML (safe loader, no
duplicate keys) and templates valid Jinja2 syntax; the rule and template vocabularies
add their own checks as they land. OAuth 2.0 accounts are checked by daemon.oauth2_check
(secrets readable, a refresh token or a client secret to get tokens with).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml

from daemon.config import Config, key_location
from daemon.errors import RulesError
from daemon.approval_rules import APPROVALS_FILE, load_approvals
from daemon.macros import MACROS_FILE, load_macros, vocabulary
from daemon.oauth2_check import oauth2_problems
from daemon.problem_check import problem_rule_problems
from daemon.rules.loader import OPTIONAL_FILES, REQUIRED_FILES, load_rules
from daemon.sla.loader import SLA_FILE, load_sla
from daemon.templates import load_templates, template_names
from daemon.secrets import shared_key_problem
from daemon.settings import defaults_of


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_yaml(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}:1: cannot read: {exc}"]
    try:
        yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return [f"{path}:{line}: {exc.problem or exc.context}"]
    except yaml.YAMLError as exc:
        return [f"{path}:1: {exc}"]
    return []


def check(cfg: Config, environ: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """Every problem found, and a one-line summary for when there is none. `environ` is
    where secrets are looked up (default: the process environment)."""
    problems, oauth_notes = oauth2_problems(cfg, environ)
    rules_dir, tpl_dir = cfg.paths.rules, cfg.paths.templates
    rule_files: list[Path] = []
    rules_note = "not loaded"
    if not rules_dir.is_dir():
        problems.append(f"{key_location(cfg, 'paths.rules')}: paths.rules: not a directory: {rules_dir}")
    else:
        rule_files = sorted(p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml"))
        loaded = {rules_dir / name for name in (*REQUIRED_FILES, *OPTIONAL_FILES)}
        try:
            ruleset = load_rules(rules_dir, known_templates=template_names(tpl_dir), defaults=defaults_of(cfg))
            rules_note = f"{len(ruleset.rules)} rule(s), version {ruleset.version}"
            problems += intake_loops(cfg, ruleset.queues)
            problems += problem_rule_problems(cfg, ruleset)
            if (rules_dir / SLA_FILE).exists():      # checked against the rules, so only when they load
                loaded.add(rules_dir / SLA_FILE)
                sla = load_sla(rules_dir, ruleset, known_templates=template_names(tpl_dir))
                rules_note += f"; {SLA_FILE}: {len(sla.policies)} SLA policies, version {sla.version}"
            if (rules_dir / APPROVALS_FILE).exists():
                loaded.add(rules_dir / APPROVALS_FILE)
                approvals = load_approvals(rules_dir, ruleset)
                rules_note += f"; {APPROVALS_FILE}: version {approvals.version}"
            if (rules_dir / MACROS_FILE).exists():
                loaded.add(rules_dir / MACROS_FILE)
                macros = load_macros(rules_dir, vocabulary(ruleset, cfg.helpdesk.ticket_prefix))
                rules_note += f"; {MACROS_FILE}: {len(macros.by_name)} macro(s)"
        except RulesError as exc:
            problems += exc.problems
        for p in rule_files:
            if p not in loaded:                  # files the loader does not read: syntax only
                problems += _check_yaml(p)
    templates: list[Path] = []
    tpl_note = "not loaded"
    if not tpl_dir.is_dir():
        problems.append(f"{key_location(cfg, 'paths.templates')}: paths.templates: not a directory: {tpl_dir}")
    else:
        templates = sorted(tpl_dir.rglob("*.j2"))
        try:
            names = load_templates(tpl_dir).names        # what `serve` counts: one per name, text + HTML
            tpl_note = f"{len(names)} template(s) ({len(templates)} file(s))"
        except RulesError as exc:
            problems += exc.problems
    shared = shared_key_problem(cfg.database_url, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    if shared:
        problems.append(f"{key_location(cfg, 'database.url')}: {shared}")
    summary = (f"ok: config {', '.join(str(s) for s in cfg.sources)}; rules in {rules_dir}: {rules_note}; "
               f"templates in {tpl_dir}: {tpl_note}" + "".join(f"; oauth2 {n}" for n in oauth_notes))
    return problems, summary


def intake_loops(cfg: Config, queues) -> list[str]:
    """An agent's own address used as an intake mailbox (an IMAP account or an SMTP recipient)
    turns every notification to that agent into a new ticket: refused (Zammad #731)."""
    agents = {a.email.lower(): q.name for q in queues.values() for a in q.agents}
    intake = [(f"imap[{i}].username", a.username) for i, a in enumerate(cfg.imap)]
    intake += [("smtp.recipients", r) for r in cfg.smtp.recipients]
    intake.append(("helpdesk.address", cfg.helpdesk.address))     # our own address as an agent's
    where = cfg.sources[-1]
    return [f"{where}:1: {key}: {address} is the address of an agent (queue {agents[address.lower()]}); "
            "notifications to that agent would come back as tickets"
            for key, address in intake if address.lower() in agents]
