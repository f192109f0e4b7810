"""The continual improvement report as text and JSON (pure): `render_text`, `report_dict`."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from daemon.clock import duration_text
from daemon.report.figures import DIMENSIONS, Figures

LABEL = {"first_response": "first response", "resolution": "resolution", "type": "type", "queue": "queue",
         "service": "service", "channel": "channel"}


def dur(d: timedelta | None) -> str:
    """'2h30m', '45m'; from two days on '24.5 days'; '-' for none."""
    if d is None:
        return "-"
    if d >= timedelta(days=2):
        return f"{d.total_seconds() / 86400:.1f} days"
    return duration_text(d, seconds=False)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def delta(now: int | float | None, before: int | float | None) -> str:
    """'+25%', '-10%', 'new' or '' (no previous week)."""
    if now is None or before is None:
        return ""
    if before == 0:
        return "new" if now else "="
    change = 100.0 * (now - before) / before
    return "=" if abs(change) < 0.5 else f"{change:+.0f}%"


def period(f: Figures) -> str:
    return f"{f.start.isoformat()} to {f.end.isoformat()} (end excluded)"


def render_text(f: Figures) -> str:
    lines = [f"Service desk report: {period(f)}", f"as of {f.generated_at.isoformat()}; "
             f"{f.tickets} ticket(s) created", ""]
    for dim in DIMENSIONS:
        lines.append(f"VOLUME BY {LABEL[dim].upper()}")
        lines += [f"  {k[:30]:<30} {n:>6}" for k, n in f.volume[dim]] or ["  (none)"]
        lines.append("")
    lines.append("TIMES (wall clock; SLA attainment in business time)")
    lines.append(f"  {'':<20} {'target':<15} {'measured':>8} {'median':>8} {'p90':>8} {'SLA met':>8} "
                 f"{'breached':>8} {'attained':>8}")
    for t in f.times:
        lines.append(f"  {t.key[:20]:<20} {LABEL[t.target]:<15} {t.measured:>8} {dur(t.median):>8} "
                     f"{dur(t.p90):>8} {t.met:>8} {t.breached:>8} {pct(t.attainment):>8}")
    lines += ["", f"BACKLOG at {f.end.isoformat()}: {f.backlog} open ticket(s); oldest {dur(f.oldest)}"]
    lines += [f"  {label:<14} {n:>6}" for label, n in f.backlog_ages]
    lines += ["", f"REOPEN RATE: {pct(f.reopen_rate)} ({f.reopened} of {f.resolved} resolved ticket(s) reopened)", ""]
    lines += _satisfaction_text(f) + [""] + _problems_text(f) + ["", "WEEK BY WEEK"]
    lines.append(f"  {'week of':<12} {'created':>8} {'':>6} {'resolved':>8} {'':>6} {'backlog':>8} {'':>6} "
                 f"{'1st resp.':>9}")
    prev = None
    for w in f.weeks:
        lines.append(f"  {w.start.date().isoformat():<12} {w.created:>8} {delta(w.created, prev and prev.created):>6} "
                     f"{w.resolved:>8} {delta(w.resolved, prev and prev.resolved):>6} {w.backlog:>8} "
                     f"{delta(w.backlog, prev and prev.backlog):>6} {dur(w.first_response_median):>9}")
        prev = w
    return "\n".join(lines).rstrip() + "\n"


def _satisfaction_text(f: Figures) -> list[str]:
    s = f.satisfaction
    if s is None:
        return ["SATISFACTION: not recorded (no satisfaction surveys in this database)"]
    out = [f"SATISFACTION: {s.answers} answer(s), average {s.average:.2f} of 5, {pct(s.satisfied)} scored 4-5"
           if s.answers else "SATISFACTION: no answers in this period"]
    out += [f"  score {n}: {c}" for n, c in s.distribution] if s.answers else []
    return out


def _problems_text(f: Figures) -> list[str]:
    if f.problems is None:
        return ["PROBLEMS: not recorded"]
    if not f.problems:
        return ["PROBLEMS: no incidents linked to problems"]
    return ["PROBLEMS WITH THE MOST LINKED INCIDENTS"] + [
        f"  #{p.problem_id:<6} {p.incidents:>4} incident(s)  {p.status:<9} {p.subject[:60]}" for p in f.problems]


def _secs(d: timedelta | None) -> float | None:
    return None if d is None else d.total_seconds()


def report_dict(f: Figures, prefix: str = "HD") -> dict[str, Any]:
    """The report as JSON-able data (durations in seconds, rates in percent)."""
    s = f.satisfaction
    return {
        "period": {"start": f.start.isoformat(), "end": f.end.isoformat(),
                   "population": "tickets created in [start, end)"},
        "generated_at": f.generated_at.isoformat(), "tickets": f.tickets,
        "volume": {dim: [{"key": k, "tickets": n} for k, n in f.volume[dim]] for dim in DIMENSIONS},
        "times": [{"target": t.target, "key": t.key, "measured": t.measured, "median_seconds": _secs(t.median),
                   "p90_seconds": _secs(t.p90), "sla_met": t.met, "sla_breached": t.breached,
                   "sla_attainment": None if t.attainment is None else round(t.attainment, 2)} for t in f.times],
        "backlog": {"at": f.end.isoformat(), "open": f.backlog, "oldest_seconds": _secs(f.oldest),
                    "ages": [{"age": label, "tickets": n} for label, n in f.backlog_ages]},
        "reopen": {"resolved": f.resolved, "reopened": f.reopened,
                   "rate": None if f.reopen_rate is None else round(f.reopen_rate, 2)},
        "satisfaction": None if s is None else {
            "answers": s.answers, "average": None if s.average is None else round(s.average, 2),
            "satisfied_percent": None if s.satisfied is None else round(s.satisfied, 2),
            "distribution": {str(n): c for n, c in s.distribution},
            "by_queue": [{"queue": q, "answers": n, "average": round(a, 2)} for q, n, a in s.by_queue]},
        "problems": None if f.problems is None else [
            {"ref": f"{prefix}-{p.problem_id}", "subject": p.subject, "status": p.status, "incidents": p.incidents}
            for p in f.problems],
        "weeks": [{"start": w.start.isoformat(), "created": w.created, "resolved": w.resolved, "backlog": w.backlog,
                   "first_response_median_seconds": _secs(w.first_response_median)} for w in f.weeks],
    }


def render_json(f: Figures, prefix: str = "HD") -> str:
    return json.dumps(report_dict(f, prefix), indent=2, ensure_ascii=False) + "\n"
