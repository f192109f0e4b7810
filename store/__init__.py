"""Persistence: the sqlmodel tables, the only SQL (repo.py), and content-addressed blobs."""
