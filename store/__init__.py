"""Persistence: the sqlmodel tables (tables.py, plus the side tables declared next to their
SQL), the modules that query them (repo, saving, batch, tickets, outbox, sla_store,
imap_state: SQL lives only in store/), and content-addressed blobs."""
