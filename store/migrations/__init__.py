"""Alembic schema migrations of the helpdeskd database (run by store/migrate.py)."""
