"""SLA at the edge, in one place: loading sla.yaml (`loader`), the SLA state for `helpdesk
show`/`export` (`views`) and `helpdesk sla report` (`report`).

The arithmetic is pure and lives in daemon.pipeline.sla; the rows in store/sla_store.py;
the escalation worker in daemon/escalation.py.
"""
