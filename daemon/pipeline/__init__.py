"""The pure pipeline stages: parse, thread, classify, plan (no I/O, no logging)."""
