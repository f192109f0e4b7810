"""The continual improvement report as one self-contained HTML page (pure): `render_html`.

Charts are inline SVG (bars and a trend chart drawn from <rect>, <polyline> and <text>,
each with a <title> a screen reader can read); styles are inline; no scripts, fonts,
images or links to fetch, so the page reads the same when it is forwarded by mail. Every
figure a chart shows is also written as text under it or in a table next to it, for the
mail clients that drop SVG (Gmail's web client, Outlook for Windows).
"""
from __future__ import annotations

import html
from typing import Sequence

from daemon.report.figures import DIMENSIONS, Figures
from daemon.report.render import LABEL, delta, dur, pct, period

e = html.escape
BLUE, GREEN, RED, GREY, ORANGE = "#1565c0", "#2e7d32", "#c62828", "#9e9e9e", "#ef6c00"
STYLE = """body { font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
  margin: 24px; max-width: 980px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td.k, th.k { text-align: left; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 170px; }
.big { font-size: 26px; font-weight: 600; } .muted { color: #666; }
.grid { display: flex; gap: 24px; flex-wrap: wrap; }"""


def bar_chart(title: str, items: Sequence[tuple[str, float]], *, colour: str = BLUE, unit: str = "",
              width: int = 440) -> str:
    """A horizontal bar chart: one labelled bar per item, its value written at its end."""
    row, label_w, top = 22, 150, 26
    height = top + row * max(len(items), 1) + 6
    top_value = max((v for _, v in items), default=0) or 1
    scale = (width - label_w - 60) / top_value
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{e(title)}" class="chart"><title>{e(title)}</title>',
             f'<text x="0" y="16" font-size="13" font-weight="600">{e(title)}</text>']
    if not items:
        parts.append(f'<text x="0" y="{top + 14}" font-size="12" fill="{GREY}">none</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = max(1, round(value * scale)) if value else 0
        shown = f"{value:g}{unit}"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{e(label[:24])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="15" fill="{colour}">'
                     f'<title>{e(label)}: {e(shown)}</title></rect>'
                     f'<text x="{label_w + w + 5}" y="{y + 14}" font-size="12">{e(shown)}</text>')
    parts.append("</svg>")
    figures = " · ".join(f"{e(label)} {value:g}{e(unit)}" for label, value in items) or "none"
    return f'<div class="figure">{"".join(parts)}<div class="muted" style="font-size:12px">{figures}</div></div>'


def trend_chart(f: Figures, width: int = 640, height: int = 220) -> str:
    """Created and resolved per week (bars), backlog at each week's end (a line)."""
    weeks = f.weeks
    title = "Week by week: created, resolved, backlog"
    left, bottom, top = 40, 40, 30
    plot_h = height - top - bottom
    top_value = max([w.created for w in weeks] + [w.resolved for w in weeks] + [w.backlog for w in weeks] + [1])
    slot = (width - left - 10) / max(len(weeks), 1)
    y = lambda v: top + plot_h - plot_h * v / top_value          # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{e(title)}" class="chart trend"><title>{e(title)}</title>',
             f'<text x="0" y="16" font-size="13" font-weight="600">{e(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end">{top_value}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" font-size="11" text-anchor="end">0</text>']
    points = []
    for i, w in enumerate(weeks):
        x = left + i * slot
        bw = max(4, slot / 2 - 6)
        for j, (name, value, colour) in enumerate((("created", w.created, BLUE), ("resolved", w.resolved, GREEN))):
            parts.append(f'<rect x="{x + 4 + j * bw:.1f}" y="{y(value):.1f}" width="{bw:.1f}" '
                         f'height="{top + plot_h - y(value):.1f}" fill="{colour}" class="{name}">'
                         f'<title>week of {w.start.date().isoformat()}: {value} {name}</title></rect>')
        points.append(f"{x + slot / 2:.1f},{y(w.backlog):.1f}")
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">'
                     f'{e(w.start.strftime("%d %b"))}</text>')
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{ORANGE}" stroke-width="2" '
                     f'class="backlog"><title>backlog at each week\'s end</title></polyline>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11"><tspan fill="{BLUE}">&#9632; created</tspan> '
                 f'<tspan fill="{GREEN}">&#9632; resolved</tspan> <tspan fill="{ORANGE}">&#8212; backlog</tspan>'
                 f'</text></svg>')
    return "".join(parts)


def _cards(f: Figures) -> str:
    fr, res = f.time("first_response"), f.time("resolution")
    cards = [("tickets created", str(f.tickets), ""),
             ("first response, median", dur(fr.median if fr else None),
              f"p90 {dur(fr.p90 if fr else None)}; SLA {pct(fr.attainment if fr else None)}"),
             ("resolution, median", dur(res.median if res else None),
              f"p90 {dur(res.p90 if res else None)}; SLA {pct(res.attainment if res else None)}"),
             ("backlog at the end", str(f.backlog), f"oldest {dur(f.oldest)}"),
             ("reopen rate", pct(f.reopen_rate), f"{f.reopened} of {f.resolved} resolved"),
             ("satisfaction", f"{f.satisfaction.average:.2f} / 5" if f.satisfaction and f.satisfaction.answers
              else "-", f"{f.satisfaction.answers} answer(s)" if f.satisfaction else "not recorded")]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="muted">{e(t)}</div><div class="big">{e(v)}</div>'
        f'<div class="muted">{e(n)}</div></div>' for t, v, n in cards) + "</div>"


def _times_table(f: Figures) -> str:
    rows = "".join(f'<tr><td class="k">{e(t.key)}</td><td class="k">{e(LABEL[t.target])}</td><td>{t.measured}</td>'
                   f'<td>{e(dur(t.median))}</td><td>{e(dur(t.p90))}</td><td>{t.met}</td><td>{t.breached}</td>'
                   f'<td>{e(pct(t.attainment))}</td></tr>' for t in f.times)
    return ('<table><tr><th class="k">queue</th><th class="k">measure</th><th>measured</th><th>median</th>'
            f'<th>p90</th><th>SLA met</th><th>breached</th><th>attained</th></tr>{rows}</table>')


def _weeks_table(f: Figures) -> str:
    out, prev = [], None
    for w in f.weeks:
        out.append(f'<tr><td class="k">{e(w.start.date().isoformat())}</td><td>{w.created}</td>'
                   f'<td>{e(delta(w.created, prev and prev.created))}</td><td>{w.resolved}</td>'
                   f'<td>{e(delta(w.resolved, prev and prev.resolved))}</td><td>{w.backlog}</td>'
                   f'<td>{e(delta(w.backlog, prev and prev.backlog))}</td><td>{e(dur(w.first_response_median))}</td>'
                   f'</tr>')
        prev = w
    return ('<table><tr><th class="k">week of</th><th>created</th><th>change</th><th>resolved</th><th>change</th>'
            f'<th>backlog</th><th>change</th><th>first response</th></tr>{"".join(out)}</table>')


def _satisfaction(f: Figures) -> str:
    s = f.satisfaction
    if s is None:
        return '<p class="muted">Satisfaction is not recorded in this database.</p>'
    if not s.answers:
        return '<p class="muted">No satisfaction answers in this period.</p>'
    return (f'<p>{s.answers} answer(s), average {s.average:.2f} of 5; {e(pct(s.satisfied))} scored 4 or 5.</p>'
            + bar_chart("Satisfaction scores", [(f"score {n}", c) for n, c in s.distribution], colour=GREEN))


def _problems(f: Figures, prefix: str) -> str:
    if f.problems is None:
        return '<p class="muted">Problems are not recorded in this database.</p>'
    if not f.problems:
        return '<p class="muted">No incidents are linked to problems.</p>'
    rows = "".join(f'<tr><td class="k">{e(prefix)}-{p.problem_id}</td><td class="k">{e(p.subject[:80])}</td>'
                   f'<td class="k">{e(p.status)}</td><td>{p.incidents}</td></tr>' for p in f.problems)
    return ('<table><tr><th class="k">problem</th><th class="k">subject</th><th class="k">status</th>'
            f'<th>linked incidents</th></tr>{rows}</table>')


def render_html(f: Figures, *, title: str = "Service desk report", prefix: str = "HD") -> str:
    """The whole page (see module docstring)."""
    volume = "".join(bar_chart(f"Tickets by {LABEL[d]}", list(f.volume[d])) for d in DIMENSIONS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p class="muted">Tickets created {e(period(f))}; measured {e(f.generated_at.isoformat())}. Times are wall-clock
from the first mail; SLA attainment = met / (met + breached) in business time, as <code>helpdesk sla report</code>.</p>
{_cards(f)}
<h2>Volume</h2>
<div class="grid">{volume}</div>
<h2>Response and resolution</h2>
{_times_table(f)}
<h2>Backlog</h2>
<p>{f.backlog} open ticket(s) at {e(f.end.isoformat())}; the oldest has waited {e(dur(f.oldest))}.</p>
{bar_chart("Backlog by age", list(f.backlog_ages), colour=ORANGE)}
<h2>Reopened</h2>
<p>{e(pct(f.reopen_rate))} of resolved tickets were reopened ({f.reopened} of {f.resolved}).</p>
<h2>Satisfaction</h2>
{_satisfaction(f)}
<h2>Problems with the most linked incidents</h2>
{_problems(f, prefix)}
<h2>Trends week over week</h2>
{trend_chart(f)}
{_weeks_table(f)}
</body></html>
"""
