"""The queue settings of problem management and satisfaction surveys (queues.yaml).

    queues:
      general:
        resolve_linked_incidents: true   # resolving a problem of this queue resolves its
                                         # linked incidents that are still open (default true)
        survey:                          # absent or false: no satisfaction survey
          every_days: 30                 # at most one survey per requester in this many days
          notify_lead: true              # a bad score (1 or 2) tells the queue's lead

Read by daemon.rules.declarations.load_queues; every problem is reported as file:line.
"""
from __future__ import annotations

from typing import Any

from daemon.rules.schema import Problems, check_keys
from daemon.rules.textmatch import type_name
from daemon.rules.yamlload import YDict

QUEUE_KEYS = ("resolve_linked_incidents", "survey")
MAX_DAYS = 3650


def load_queue_itil(q: YDict, path: str, file: str, problems: Problems) -> dict[str, Any]:
    """The Queue fields these settings give (resolve_linked_incidents, survey_days,
    survey_notify_lead)."""
    resolve = q.get("resolve_linked_incidents", True)
    if not isinstance(resolve, bool):
        problems.add(file, q.line_of("resolve_linked_incidents"),
                     f"{path}.resolve_linked_incidents: expected true or false, got {type_name(resolve)}")
    out: dict[str, Any] = {"resolve_linked_incidents": resolve is not False, "survey_days": None,
                           "survey_notify_lead": True}
    survey = q.get("survey", False)
    if survey is False or survey is None:
        return out
    if not isinstance(survey, YDict):
        problems.add(file, q.line_of("survey"), f"{path}.survey: expected a mapping {{every_days: N, notify_lead: "
                                                f"true}} or false, got {type_name(survey)}")
        return out
    check_keys(survey, ("every_days", "notify_lead"), f"{path}.survey", file, problems)
    days, lead = survey.get("every_days", 30), survey.get("notify_lead", True)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        problems.add(file, survey.line_of("every_days"),
                     f"{path}.survey.every_days: expected a whole number of days 1..{MAX_DAYS}, got {days!r}")
        days = 30
    if not isinstance(lead, bool):
        problems.add(file, survey.line_of("notify_lead"),
                     f"{path}.survey.notify_lead: expected true or false, got {type_name(lead)}")
    out.update(survey_days=days, survey_notify_lead=lead is not False)
    return out
