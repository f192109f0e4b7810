"""The ITIL priority matrix: impact x urgency -> priority, read from priority.yaml.

Levels are listed highest first (`P1` before `P4`, `high` before `low`); "raising" an
impact or urgency means moving towards the front of its list. Every cell of the matrix
must be filled with a declared priority level, so a lookup never fails at run time.
"""
from __future__ import annotations

from types import MappingProxyType

from daemon.model import PriorityMatrix
from daemon.rules.schema import Problems, check_keys, expect_mapping, expect_names, expect_str
from daemon.rules.yamlload import YDict

KEYS = ("levels", "impact_levels", "urgency_levels", "matrix", "default_impact", "default_urgency")


def load_matrix(data: YDict, file: str, problems: Problems) -> PriorityMatrix | None:
    """The matrix from priority.yaml's document, or None after reporting problems."""
    before = len(problems)
    check_keys(data, KEYS, "priority", file, problems, required=KEYS[:4])
    levels = expect_names(data.get("levels"), "levels", file, data.line_of("levels"), problems)
    impacts = expect_names(data.get("impact_levels"), "impact_levels", file, data.line_of("impact_levels"), problems)
    urgencies = expect_names(data.get("urgency_levels"), "urgency_levels", file,
                             data.line_of("urgency_levels"), problems)
    cells: dict[tuple[str, str], str] = {}
    table = expect_mapping(data.get("matrix"), "matrix", file, data.line_of("matrix"), problems) \
        if "matrix" in data else None
    if table is not None and impacts and urgencies and levels:
        check_keys(table, impacts, "matrix", file, problems)
        for imp in impacts:
            row = table.get(imp)
            if imp not in table:
                problems.add(file, table.line, f"matrix: no row for impact {imp!r}")
                continue
            row = expect_mapping(row, f"matrix.{imp}", file, table.line_of(imp), problems)
            if row is None:
                continue
            check_keys(row, urgencies, f"matrix.{imp}", file, problems)
            for urg in urgencies:
                if urg not in row:
                    problems.add(file, row.line, f"matrix.{imp}: no cell for urgency {urg!r}")
                elif row[urg] not in levels:
                    problems.add(file, row.line_of(urg), f"matrix.{imp}.{urg}: {row[urg]!r} is not one of "
                                                         f"levels {list(levels)}")
                else:
                    cells[(imp, urg)] = row[urg]
    d_imp = expect_str(data, "default_impact", "priority", file, problems, default=impacts[-1] if impacts else "")
    d_urg = expect_str(data, "default_urgency", "priority", file, problems,
                       default=urgencies[-1] if urgencies else "")
    if impacts and d_imp not in impacts:
        problems.add(file, data.line_of("default_impact"), f"default_impact: {d_imp!r} is not in impact_levels")
    if urgencies and d_urg not in urgencies:
        problems.add(file, data.line_of("default_urgency"), f"default_urgency: {d_urg!r} is not in urgency_levels")
    if len(problems) > before:
        return None
    return PriorityMatrix(levels, impacts, urgencies, MappingProxyType(cells), d_imp or "", d_urg or "")
