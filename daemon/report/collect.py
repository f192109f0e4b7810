"""Reading what the continual improvement report needs (edge): store rows in, `Figures` out."""
from __future__ import annotations

from datetime import datetime

from daemon.pipeline.sla import SlaSettings
from daemon.report.figures import Figures, build_figures
from store.report_reads import ReportReads
from store.sla_store import SlaStore


def collect(engine, settings: SlaSettings | None, start: datetime, end: datetime, now: datetime) -> Figures:
    """The report's figures for [start, end), measured at `now`; `settings`: the live SLA
    settings (None: no sla.yaml, so no attainment)."""
    reads = ReportReads(engine)
    histories = [h for h, _, _ in SlaStore(engine).histories(start, end)] if settings is not None else []
    return build_figures(reads.maybe_open(start, end), start=start, end=end, now=now, histories=histories,
                         settings=settings, scores=reads.read_satisfaction(start, end),
                         problems=reads.read_problem_links())
