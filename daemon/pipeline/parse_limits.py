"""The hard limits of the parse stage (daemon.pipeline.parse re-exports them): a module of
its own so that reading them off the config (daemon.settings, which `helpdesk show` and
`export` load for the SLA's defaults) does not import the parser and mail-parser (issue 16).
Values only."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParseLimits:
    """Hard limits; over one, the mail is refused with the ParseError reason named."""

    max_bytes: int = 50 * 1024 * 1024       # too_large
    max_parts: int = 500                    # too_many_parts (MIME entities)
    max_depth: int = 30                     # too_deep (multipart / message/* nesting)
    max_headers: int = 1000                 # too_many_headers (fields in the top header block)
    max_header_bytes: int = 1024 * 1024     # too_many_headers (size of the top header block)
    max_text_chars: int = 2_000_000         # longer text/html bodies are cut (a defect)
