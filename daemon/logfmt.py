"""Log output for every command: `[log] format = "text"` or `"json"` on stderr (journald).

Text is `time LEVEL logger: message`. JSON is one object a line with `time`, `level`,
`logger`, `message`, and `message_id`, `ticket` and `outbox` when the line names them -
taken from `extra={...}` when a caller passes it, else read from the `message_id=<...>`,
`ticket=N` and `outbox=N` the edges already put in their text - plus `exception` when
there is a traceback. Edge module: it only formats.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("message_id", "ticket", "outbox")
_IN_TEXT = re.compile(r"\b(message_id|ticket|outbox)=(<[^>\s]*>|[^\s,;()]+)")


def fields_of(text: str) -> dict[str, object]:
    """`message_id`, `ticket`, `outbox` named in a log line's text (first of each)."""
    out: dict[str, object] = {}
    for key, value in _IN_TEXT.findall(text):
        if key in out:
            continue
        value = value.strip("<>")
        if key != "message_id":
            if value in ("None", "-", ""):
                continue
            out[key] = int(value) if value.isdigit() else value
        elif value:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": message}
        out.update(fields_of(message))
        for key in FIELDS:
            if getattr(record, key, None) is not None:
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def install(level: int, fmt: str = "text", stream=None) -> logging.Handler:
    """Configure the root logger once: `fmt` is "text" or "json"."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    if not root.handlers:                     # as logging.basicConfig: a configured root is left alone
        root.addHandler(handler)
        root.setLevel(level)
    return handler
