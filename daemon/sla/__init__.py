"""SLA at the edge, in one place: loading sla.yaml (`loader`), the SLA state for `helpdesk
show`/`export` (`views`), `helpdesk sla report` (`report`) and when to schedule a wake-up of
the SLA timer queue (`wakeups`).

The arithmetic is pure and lives in daemon.pipeline.sla; the rows in store/sla_store.py;
the escalation worker in daemon/escalation.py.
"""
