"""Turn a database made by today's code into one of an older revision, for upgrade tests.

Migrations go forward only, so the tests that need "a database from before revision X"
with real rows fill a desk with today's code and then take away, by reflection, every
table, index and column that the older revision's schema does not have (the reference is
an SQLite database migrated up to that revision, so names, not dialects, are compared),
and set the recorded revision. A migration added later needs nothing here."""
from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from store import migrate


def _shape(found, table: str) -> tuple[set[str], set[tuple], set[str]]:
    """(columns, unique column sets, index names) of one reflected table."""
    uniques = {tuple(u["column_names"]) for u in found.get_unique_constraints(table)}
    uniques |= {tuple(i["column_names"]) for i in found.get_indexes(table) if i.get("unique")}
    return ({c["name"] for c in found.get_columns(table)}, uniques, {i["name"] for i in found.get_indexes(table)})


def _schema_at(revision: str) -> dict[str, tuple[set[str], set[tuple], set[str]]]:
    """{table: _shape} of a new SQLite database migrated up to `revision`."""
    ref = create_engine("sqlite://")
    with ref.begin() as c:
        command.upgrade(migrate.alembic_config(c), revision)
    found = inspect(ref)
    schema = {t: _shape(found, t) for t in found.get_table_names()}
    ref.dispose()
    return schema


def _undo(engine: Engine, old: dict, also_drop: tuple[str, ...]) -> list[str]:
    """The statements that take `engine`'s schema back to `old` (reflected before any runs)."""
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    found = inspect(engine)
    out = [f"DROP TABLE IF EXISTS {t}{cascade}" for t in also_drop]
    for table in found.get_table_names():
        if table == "alembic_version" or table in also_drop:
            continue
        if table not in old:
            out.append(f"DROP TABLE IF EXISTS {table}{cascade}")
            continue
        columns, uniques, indexes = old[table]
        for unique in found.get_unique_constraints(table) if cascade else ():   # PostgreSQL: its own object
            if tuple(unique["column_names"]) not in uniques:
                out.append(f"ALTER TABLE {table} DROP CONSTRAINT {unique['name']}")
        for index in found.get_indexes(table):
            cols = tuple(index["column_names"])
            if index.get("duplicates_constraint") or index["name"] in indexes or (index.get("unique") and cols in uniques):
                continue
            out.append(f"DROP INDEX IF EXISTS {index['name']}")
        out += [f"ALTER TABLE {table} DROP COLUMN {c['name']}" for c in found.get_columns(table)
                if c["name"] not in columns]
    return out


def roll_back_to(engine: Engine, revision: str, *, also_drop: tuple[str, ...] = ()) -> None:
    """Make `engine`'s database look as revision `revision` left it (see module docstring);
    `also_drop`: tables the reference cannot show (e.g. SQLite's FTS shadow tables)."""
    statements = _undo(engine, _schema_at(revision), also_drop)
    with engine.begin() as c:
        for statement in statements:
            c.execute(text(statement))
        c.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
