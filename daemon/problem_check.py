"""`helpdesk check`: a rule's `problem: HD-7` must name an open problem of this desk's database.

The rule loader checks the form (a ticket reference); only the database knows whether the
ticket exists, is of type `problem` and is still open. When the database is there (the
configured URL, or the SQLite file in the state directory) each such rule is looked up and
a wrong one reported as `routing.yaml:LINE: ...`; without a database (a new install) or
when it cannot be read, nothing is reported (the daemon still refuses to link to anything
but an open problem, and says so in the new ticket's events).
"""
from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from store.db import make_engine
from store import tables as m

OPEN = ("new", "open", "pending")


def problem_rule_problems(cfg, ruleset) -> list[str]:
    """Every rule whose `problem:` names no open problem, as `file:line: reason`."""
    refs = [(rule, e.value) for rule in ruleset.rules for e in rule.effects if e.field == "problem"]
    if not refs or (not cfg.database.url and not (cfg.state_dir / "helpdesk.db").exists()):
        return []
    prefix = cfg.helpdesk.ticket_prefix
    engine = make_engine(cfg.database_url)
    out: list[str] = []
    try:
        with Session(engine) as s:
            for rule, tid in refs:
                t = s.get(m.Ticket, tid)
                why = "does not exist" if t is None else f"is a {t.type}, not a problem" if t.type != "problem" \
                    else f"is {t.status}, not open" if t.status not in OPEN else None
                if why:
                    out.append(f"{rule.file}:{rule.line}: rule {rule.name!r}: problem: {prefix}-{tid} {why}")
    except SQLAlchemyError:
        return []
    finally:
        engine.dispose()
    return out
