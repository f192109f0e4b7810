"""`helpdesk sla report`: SLA attainment over a period, computed and rendered (pure).

`build_report(histories, settings, start=, end=, now=)` takes the tickets CREATED in
[start, end) (the CLI reads them from the store as `TicketHistory` values) and measures,
as of `now`, their first-response and resolution targets under each ticket's policy and
current priority: met, breached (also while still open: a breach cannot be undone),
unanswered (first response only: resolved within the goal without any public answer to
the requester - not met, and left out of the attainment, like open) or open (running and
not yet breached; left out of the attainment). Attainment is met / (met + breached).
Times are business time (pauses excluded) of the completed clocks (an unanswered one has
no response time): the median, and the 90th percentile by nearest rank. Rows are given
overall and per queue, priority and policy.

`render_text`, `render_json` and `render_html` make the output; the HTML page is one
self-contained file (inline styles and CSS bars, no scripts, fonts or images to fetch)
that survives being forwarded by mail.
"""
from __future__ import annotations

import html
import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from daemon.clock import duration_text as clock_duration
from daemon.pipeline.calendar import to_us
from daemon.pipeline.sla import SlaSettings, TicketHistory, policy_for, sla_state

REPORT_TARGETS = ("first_response", "resolution")
DIMENSIONS = ("all", "queue", "priority", "policy")
_LABEL = {"first_response": "first response", "resolution": "resolution", "all": "overall",
          "queue": "queue", "priority": "priority", "policy": "policy"}
_COLOURS = {"met": "#2e7d32", "breached": "#c62828", "unanswered": "#f9a825", "open": "#9e9e9e"}
OUTCOMES = ("met", "breached", "unanswered", "open")


@dataclass(frozen=True)
class Row:
    """One group (`dimension` = all | queue | priority | policy, and its `key`) and target."""

    dimension: str
    key: str
    target: str
    tickets: int
    met: int
    breached: int
    open: int
    median: timedelta | None
    p90: timedelta | None
    unanswered: int = 0

    @property
    def attainment(self) -> float | None:
        decided = self.met + self.breached
        return 100.0 * self.met / decided if decided else None


@dataclass(frozen=True)
class SlaReport:
    start: datetime
    end: datetime
    generated_at: datetime
    tickets: int
    skipped: int                      # created in the period but without targets (unknown priority)
    rows: tuple[Row, ...]

    def row(self, dimension: str, key: str, target: str) -> Row | None:
        return next((r for r in self.rows if (r.dimension, r.key, r.target) == (dimension, key, target)), None)


def build_report(histories: Iterable[TicketHistory], settings: SlaSettings, *, start: datetime,
                 end: datetime, now: datetime) -> SlaReport:
    """Attainment of the tickets created in [start, end), as of `now`."""
    lo, hi = to_us(start), to_us(end)
    groups: dict[tuple[str, str, str], list[tuple[str, timedelta | None]]] = {}
    tickets = skipped = 0
    for h in histories:
        if not lo <= to_us(h.created_at) < hi:
            continue
        tickets += 1
        policy = policy_for(settings, h)
        state = sla_state(h, policy, now)
        if not state.clocks:
            skipped += 1
            continue
        keys = {"all": "all", "queue": h.queue, "priority": h.priority, "policy": policy.name}
        for target in REPORT_TARGETS:
            clock = state.clock(target)
            outcome = clock.state if clock.state in OUTCOMES else "open"
            value = (outcome, clock.elapsed if clock.phase == "stopped" and not clock.unanswered else None)
            for dim in DIMENSIONS:
                groups.setdefault((dim, keys[dim], target), []).append(value)
    rows = [_row(dim, key, target, items) for (dim, key, target), items in groups.items()]
    rows.sort(key=lambda r: (DIMENSIONS.index(r.dimension), r.key, REPORT_TARGETS.index(r.target)))
    return SlaReport(start, end, now, tickets, skipped, tuple(rows))


def _row(dim: str, key: str, target: str, items: list[tuple[str, timedelta | None]]) -> Row:
    times = sorted(t for _, t in items if t is not None)
    count = {k: sum(1 for o, _ in items if o == k) for k in OUTCOMES}
    median = statistics.median(times) if times else None
    p90 = times[math.ceil(0.9 * len(times)) - 1] if times else None
    return Row(dim, key, target, len(items), count["met"], count["breached"], count["open"], median, p90,
               count["unanswered"])


# ------------------------------------------------------------------ rendering
def duration_text(d: timedelta | None) -> str:
    """'1h05m', '45m', '-' for none; rounded to the minute."""
    return clock_duration(d, seconds=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _period(report: SlaReport) -> str:
    return f"{report.start.isoformat()} to {report.end.isoformat()} (end excluded)"


def render_text(report: SlaReport) -> str:
    lines = [f"SLA report: tickets created {_period(report)}",
             f"as of {report.generated_at.isoformat()}; {report.tickets} ticket(s)"
             + (f", {report.skipped} without targets" if report.skipped else ""),
             "attained = met / (met + breached); open = not yet due; unanswered = resolved without a "
             "public answer; times are business time", ""]
    head = f"  {'':<22} {'target':<15} {'tickets':>7} {'met':>6} {'breached':>8} {'open':>6} " \
           f"{'unanswered':>10} {'attained':>8} {'median':>8} {'p90':>8}"
    for dim in DIMENSIONS:
        rows = [r for r in report.rows if r.dimension == dim]
        if not rows:
            continue
        lines += [f"BY {_LABEL[dim].upper()}" if dim != "all" else "OVERALL", head]
        last = None
        for r in rows:
            shown = r.key if r.key != last else ""
            last = r.key
            lines.append(f"  {shown[:22]:<22} {_LABEL[r.target]:<15} {r.tickets:>7} {r.met:>6} {r.breached:>8} "
                         f"{r.open:>6} {r.unanswered:>10} {_pct(r.attainment):>8} {duration_text(r.median):>8} "
                         f"{duration_text(r.p90):>8}")
        lines.append("")
    if not report.rows:
        lines.append("No tickets with SLA targets were created in this period.")
    return "\n".join(lines).rstrip() + "\n"


def report_dict(report: SlaReport) -> dict:
    """The report as plain JSON-able data (durations in seconds, attainment in percent)."""
    def secs(d: timedelta | None) -> float | None:
        return None if d is None else d.total_seconds()
    return {
        "period": {"start": report.start.isoformat(), "end": report.end.isoformat(),
                   "population": "tickets created in [start, end)"},
        "generated_at": report.generated_at.isoformat(),
        "tickets": report.tickets,
        "skipped": report.skipped,
        "rows": [{"dimension": r.dimension, "key": r.key, "target": r.target, "tickets": r.tickets,
                  "met": r.met, "breached": r.breached, "open": r.open, "unanswered": r.unanswered,
                  "attainment": None if r.attainment is None else round(r.attainment, 2),
                  "median_seconds": secs(r.median), "p90_seconds": secs(r.p90)} for r in report.rows],
    }


def render_json(report: SlaReport) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"


def render_html(report: SlaReport, *, title: str = "Service desk SLA report", goal: float = 95.0) -> str:
    """One self-contained HTML page; attainment at or above `goal` % is shown in green."""
    e = html.escape
    parts = [f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>
body {{ font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 24px; }}
table {{ border-collapse: collapse; margin: 8px 0 24px; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }} td.k, th.k {{ text-align: left; }}
.cards {{ display: flex; gap: 16px; flex-wrap: wrap; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 12px 18px; min-width: 200px; }}
.big {{ font-size: 28px; font-weight: 600; }} .muted {{ color: #666; }}
</style></head><body>
<h1 style="font-size:22px">{e(title)}</h1>
<p class="muted">Tickets created {e(_period(report))}; measured {e(report.generated_at.isoformat())}.
{report.tickets} ticket(s){f", {report.skipped} without targets" if report.skipped else ""}.
Attained = met / (met + breached); open tickets not yet due and tickets resolved without a
public answer (unanswered) are left out. Times are business
hours (time waiting on the customer excluded).</p>
<div class="cards">"""]
    for target in REPORT_TARGETS:
        r = report.row("all", "all", target)
        value = _pct(r.attainment) if r else "-"
        colour = _colour(r.attainment if r else None, goal)
        parts.append(f'<div class="card"><div class="muted">{e(_LABEL[target])} attained</div>'
                     f'<div class="big" style="color:{colour}">{e(value)}</div>'
                     f'<div class="muted">median {e(duration_text(r.median if r else None))}, '
                     f'p90 {e(duration_text(r.p90 if r else None))}</div></div>')
    parts.append("</div>")
    for dim in DIMENSIONS[1:]:
        rows = [r for r in report.rows if r.dimension == dim]
        if rows:
            parts.append(_html_table(dim, rows, goal))
    parts.append(f'<p class="muted">Legend: <span style="color:{_COLOURS["met"]}">&#9632; met</span> '
                 f'<span style="color:{_COLOURS["breached"]}">&#9632; breached</span> '
                 f'<span style="color:{_COLOURS["unanswered"]}">&#9632; unanswered</span> '
                 f'<span style="color:{_COLOURS["open"]}">&#9632; open</span></p></body></html>\n')
    return "\n".join(parts)


def _colour(value: float | None, goal: float) -> str:
    if value is None:
        return "#666"
    return _COLOURS["met"] if value >= goal else "#ef6c00" if value >= goal - 10 else _COLOURS["breached"]


def _html_table(dim: str, rows: list[Row], goal: float) -> str:
    e = html.escape
    out = [f'<h2 style="font-size:18px">By {e(_LABEL[dim])}</h2><table>',
           f'<tr><th class="k">{e(_LABEL[dim])}</th><th class="k">target</th><th>tickets</th><th>met</th>'
           '<th>breached</th><th>open</th><th>unanswered</th><th>attained</th><th class="k">split</th><th>median</th><th>p90</th></tr>']
    for r in rows:
        out.append(f'<tr><td class="k">{e(r.key)}</td><td class="k">{e(_LABEL[r.target])}</td><td>{r.tickets}</td>'
                   f'<td>{r.met}</td><td>{r.breached}</td><td>{r.open}</td><td>{r.unanswered}</td>'
                   f'<td style="color:{_colour(r.attainment, goal)};font-weight:600">{e(_pct(r.attainment))}</td>'
                   f'<td class="k">{_bar(r)}</td><td>{e(duration_text(r.median))}</td>'
                   f'<td>{e(duration_text(r.p90))}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def _bar(r: Row) -> str:
    """A 200px stacked bar of met / breached / unanswered / open, made of inline-styled spans."""
    total = r.met + r.breached + r.unanswered + r.open
    spans = []
    for kind, count in (("met", r.met), ("breached", r.breached), ("unanswered", r.unanswered), ("open", r.open)):
        if count:
            width = max(1, round(200 * count / total))
            spans.append(f'<span title="{kind}: {count}" style="display:inline-block;height:12px;'
                         f'width:{width}px;background:{_COLOURS[kind]}"></span>')
    return f'<span style="display:inline-block;width:200px;background:#eee;line-height:0">{"".join(spans)}</span>'
