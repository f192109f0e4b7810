"""`helpdesk tickets` streams its output (daemon.views): the pieces are the bytes the whole
list would have printed, text and JSON, so a million tickets need no more memory than one."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from daemon.views import json_list_pieces, tickets_lines, tickets_text
from store.records import TicketRow

AT = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def row(i: int, subject: str = "VPN") -> TicketRow:
    return TicketRow(i, subject, "incident", "new", "P3", "general", f"u{i}@example.org", None, AT, AT, 1, "v1", None)


def test_json_pieces_are_the_whole_list_dumped():
    for objs in ([], [{"a": 1}], [{"a": "line\nbreak", "b": [1, {"c": None}]}, {"é": "ü"}, 3, "s", [], {}]):
        assert "".join(json_list_pieces(objs)) == json.dumps(objs, ensure_ascii=False, indent=1)


def test_json_pieces_are_produced_one_at_a_time():
    pulled = []

    def objs():
        for i in range(3):
            pulled.append(i)
            yield {"n": i}
    pieces = json_list_pieces(objs())
    next(pieces)
    assert pulled == [0]                        # nothing read ahead


def test_text_lines_have_a_header_and_say_when_there_are_none():
    lines = list(tickets_lines(iter([row(2), row(1, "Printer\x1b[31m")]), "HD"))
    assert lines[0].startswith("REF") and lines[1].startswith("HD-2 ") and len(lines) == 3
    assert "\x1b" not in lines[2]               # terminal escapes shown, not sent
    assert list(tickets_lines(iter(()), "HD")) == ["no tickets"] == tickets_text([], "HD").splitlines()
