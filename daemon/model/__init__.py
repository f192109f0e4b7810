"""Plain typed values that cross the layers: the pipeline stages, the store and the edges.

Frozen dataclasses only: no ORM rows, no `email.message` objects, no I/O. Grouped by what
they describe, every name importable from `daemon.model`:

  mail     parse -> ParsedMessage; thread -> ThreadDecision; classify -> Routing; the
           outgoing mail and mail history planning works with
  desk     agents, queues, services, the priority matrix, the sender verdict (Auth)
  tickets  what the agent path, the commands and the SLA clocks are told about a ticket
"""
from daemon.model.mail import (Address, AttachmentPart, BounceMark, DsnReport, Envelope, FuseAlert,
                               KnownMessage, MachineVerdict, MailEffects, MailHistory, OutgoingMail,
                               ParsedMessage, Routing, ThreadCandidates, ThreadDecision,
                               TicketGlance)
from daemon.model.desk import (Agent, Auth, PriorityMatrix, Queue, Service)
from daemon.model.tickets import (INITIAL_STATUS, PAUSED, STOPPED, Command, StatusChange,
                                  TicketHistory, TicketState)

__all__ = ["Address", "Agent", "AttachmentPart", "Auth", "BounceMark", "Command", "DsnReport", "Envelope", "FuseAlert", "INITIAL_STATUS", "KnownMessage", "MachineVerdict", "MailEffects", "MailHistory", "OutgoingMail", "PAUSED", "ParsedMessage", "PriorityMatrix", "Queue", "Routing", "STOPPED", "Service", "StatusChange", "ThreadCandidates", "ThreadDecision", "TicketGlance", "TicketHistory", "TicketState"]
