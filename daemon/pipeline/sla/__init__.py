"""SLA arithmetic (pure), in one place: clocks, deadlines and escalation plans over one
ticket's history (`clocks`), and the escalation mails to send for a due level (`escalate`).

The SLA settings are loaded by the edge package daemon.sla (loader; views and report for
the CLI); the business calendars are daemon.pipeline.calendar's, shared with routing.
The names of `clocks` are importable from here.
"""
from daemon.pipeline.sla.clocks import (Action, BusinessCalendar, ClockState, Escalation, Level,
                                        Policy, PolicyChoice, Selector, SlaSettings, SlaState,
                                        StatusChange, TARGETS, Targets, TicketHistory,
                                        add_business_time, business_time_between, due_now,
                                        plan_escalations, policy_for, select_policy, sla_state)

__all__ = ["Action", "BusinessCalendar", "ClockState", "Escalation", "Level", "Policy", "PolicyChoice", "Selector", "SlaSettings", "SlaState", "StatusChange", "TARGETS", "Targets", "TicketHistory", "add_business_time", "business_time_between", "due_now", "plan_escalations", "policy_for", "select_policy", "sla_state"]
