"""Commands in replies: parse the `#command` lines at the top of a body and validate them.

Pure: no I/O. An agent (or a requester, for the few things requesters may do) changes a
ticket by starting a reply with commands, one per line:

    #status pending|open|resolved|closed    #resolve  #close  #pending  #open
    #priority P1          #assign alice@example.com | me | none
    #queue network        #type request     #tag vip   #tag -vip (or #untag vip)
    #merge HD-17          #link HD-9        #note (the mail is an internal note)
    #problem HD-7         (this incident is caused by problem HD-7)
    #link HD-12 HD-13     (on a problem: these are its incidents; elsewhere: related tickets)
    #workaround TEXT      (a problem's known-error workaround; without TEXT the message is
                          the workaround and the mail an internal note)

The command block starts at the first non-blank line and ends at the first line that is
not a command (`#` and a letter); blank lines inside it are allowed. What follows is the
message. Names are checked against the live rule set (`Vocabulary`: queues, types, tags,
agents, priority levels), so a typo is refused with the reason instead of inventing a
queue. A line that looks like a command but is not one is refused, never sent on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.model import Command

STATUSES = ("open", "pending", "resolved", "closed")
ALIASES = {"resolve": ("status", "resolved"), "close": ("status", "closed"), "pending": ("status", "pending"),
           "open": ("status", "open"), "untag": ("untag", None)}
NAMES = ("status", "priority", "assign", "queue", "type", "tag", "untag", "merge", "link", "note", "problem",
         "workaround")
REQUESTER_MAY = ("resolve", "close")            # what [agents] requester_commands may allow
MAX_COMMANDS = 20
_LINE = re.compile(r"^#([A-Za-z][A-Za-z_-]{0,30})(?:\s+(.*?))?\s*$")
_REF = re.compile(r"^(?:([A-Za-z]+)-)?#?(\d{1,12})$")


@dataclass(frozen=True)
class Refusal:
    line: str
    reason: str


@dataclass(frozen=True)
class Parsed:
    """The command block as written: (line, name, argument) each; the rest is `body`."""

    lines: tuple[tuple[str, str, str], ...]
    body: str


@dataclass(frozen=True)
class Commands:
    """Validated commands (in order), the refused lines with the reason, and the body."""

    commands: tuple[Command, ...] = ()
    refused: tuple[Refusal, ...] = ()
    body: str = ""

    @property
    def note(self) -> bool:
        return any(c.name == "note" for c in self.commands)

    @property
    def written(self) -> bool:
        return bool(self.commands or self.refused)

    def status(self) -> str | None:
        """The last status a command asks for, or None."""
        return next((c.value for c in reversed(self.commands) if c.name == "status"), None)


@dataclass(frozen=True)
class Vocabulary:
    """The names commands may use, from the live rule set."""

    queues: frozenset[str]
    types: frozenset[str]
    tags: frozenset[str]
    agents: frozenset[str]
    levels: tuple[str, ...]
    prefix: str = "HD"


def parse_commands(text: str) -> Parsed:
    """Split `text` into the leading command lines and the body after them."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found: list[tuple[str, str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        m = _LINE.match(line)
        if m is None:
            break
        found.append((line[:200], m.group(1).lower(), (m.group(2) or "").strip()))
        i += 1
    return Parsed(tuple(found), "\n".join(lines[i:]).strip("\n"))


def validate(parsed: Parsed, vocab: Vocabulary, *, sender: str, ticket_id: int) -> Commands:
    """The agent's commands checked against the vocabulary; each bad one refused with why."""
    ok: list[Command] = []
    refused: list[Refusal] = []
    for n, (line, name, arg) in enumerate(parsed.lines):
        if n >= MAX_COMMANDS:
            refused.append(Refusal(line, f"more than {MAX_COMMANDS} commands in one mail"))
            continue
        result = _one(line, name, arg, vocab, sender.lower(), ticket_id)
        if isinstance(result, Command) and result.name == "workaround" and not result.value:
            result = _workaround_body(line, parsed.body, ok)
        (ok if isinstance(result, Command) else refused).append(result)
    return Commands(tuple(ok), tuple(refused), parsed.body)


def _workaround_body(line: str, body: str, ok: list[Command]) -> Command | Refusal:
    """`#workaround` alone: the message is the workaround, and an internal note."""
    if not body.strip():
        return Refusal(line, "#workaround needs the text: on the line, or as the message below the commands")
    if not any(c.name == "note" for c in ok):
        ok.append(Command("note", "", line))
    return Command("workaround", body.strip(), line)


def validate_requester(parsed: Parsed, allowed: tuple[str, ...]) -> Commands:
    """A requester's commands: only the statuses in `allowed` (resolve, close)."""
    ok: list[Command] = []
    refused: list[Refusal] = []
    for line, name, arg in parsed.lines:
        want = {"resolve": "resolved", "close": "closed"}
        key = name if name in want else next((k for k, v in want.items() if name == "status" and arg.lower() == v),
                                             None)
        if key is not None and key in allowed and (name == "status" or not arg):
            ok.append(Command("status", want[key], line))
        else:
            refused.append(Refusal(line, "requesters may only " + (" or ".join(f"#{a}" for a in allowed)
                                                                      if allowed else "write messages")))
    return Commands(tuple(ok), tuple(refused), parsed.body)


def _one(line: str, name: str, arg: str, vocab: Vocabulary, sender: str, ticket_id: int) -> Command | Refusal:
    if name in ALIASES:
        name, fixed = ALIASES[name]
        if fixed is not None:
            if arg:
                return Refusal(line, f"#{line.split()[0][1:]} takes no value")
            arg = fixed
    if name not in NAMES:
        return Refusal(line, f"unknown command #{name}; known: {', '.join('#' + x for x in NAMES)}")
    if name == "note":
        return Command("note", "", line) if not arg else Refusal(line, "#note takes no value")
    if name == "workaround":
        return Command(name, arg, line)
    if name == "link" and len(arg.split()) > 1:
        return _ticket_refs(line, name, arg, vocab, sender, ticket_id)
    if not arg or len(arg.split()) != 1:
        return Refusal(line, f"#{name} needs exactly one value")
    if name == "tag" and arg.startswith("-"):
        name, arg = "untag", arg[1:]
    check = _CHECKS[name]
    return check(line, name, arg, vocab, sender, ticket_id)


def _status(line, name, arg, vocab, sender, ticket_id):
    value = arg.lower()
    return Command(name, value, line) if value in STATUSES else \
        Refusal(line, f"unknown status {arg!r}; use one of {', '.join(STATUSES)}")


def _priority(line, name, arg, vocab, sender, ticket_id):
    found = next((lv for lv in vocab.levels if lv.lower() == arg.lower()), None)
    return Command(name, found, line) if found else \
        Refusal(line, f"unknown priority {arg!r}; levels: {', '.join(vocab.levels)}")


def _named(what: str, pool_of):
    def check(line, name, arg, vocab, sender, ticket_id):
        pool = pool_of(vocab)
        found = next((x for x in pool if x.lower() == arg.lower()), None)
        if found:
            return Command(name, found, line)
        return Refusal(line, f"unknown {what} {arg!r}; declared: {', '.join(sorted(pool)) or 'none'}")
    return check


def _assign(line, name, arg, vocab, sender, ticket_id):
    value = arg.lower()
    if value == "me":
        value = sender
    if value in ("none", "nobody"):
        return Command(name, "", line)
    if value in vocab.agents:
        return Command(name, value, line)
    return Refusal(line, f"{arg!r} is not a registered agent (rules/queues.yaml)")


def _ticket_ref(line, name, arg, vocab, sender, ticket_id):
    m = _REF.match(arg.strip("[]"))
    if m is None or (m.group(1) and m.group(1).upper() != vocab.prefix.upper()):
        return Refusal(line, f"#{name} needs a ticket such as {vocab.prefix}-17")
    other = int(m.group(2))
    if other == ticket_id:
        return Refusal(line, f"#{name}: a ticket cannot be {'merged into' if name == 'merge' else 'linked to'} itself")
    return Command(name, str(other), line)


def _ticket_refs(line, name, arg, vocab, sender, ticket_id):
    refs = arg.replace(",", " ").split()
    if len(refs) > MAX_COMMANDS:
        return Refusal(line, f"#{name}: at most {MAX_COMMANDS} tickets in one line")
    found = [_ticket_ref(line, name, r, vocab, sender, ticket_id) for r in refs]
    bad = next((f for f in found if isinstance(f, Refusal)), None)
    return bad or Command(name, " ".join(dict.fromkeys(f.value for f in found)), line)


_CHECKS = {
    "status": _status, "priority": _priority, "assign": _assign,
    "queue": _named("queue", lambda v: v.queues), "type": _named("type", lambda v: v.types),
    "tag": _named("tag", lambda v: v.tags), "untag": _named("tag", lambda v: v.tags),
    "merge": _ticket_ref, "link": _ticket_ref, "problem": _ticket_ref,
}


@dataclass(frozen=True)
class Named:
    """What a command block may change besides its own ticket, read from the lines as written
    (before validation): the tickets `#merge`/`#link`/`#problem` name, whether a merge is
    among them, whether a status changes. The write transaction locks them first (store.writing)."""

    tickets: frozenset[int] = frozenset()
    merge: bool = False
    status: bool = False


def named_tickets(parsed: Parsed) -> Named:
    """See `Named`."""
    tickets: set[int] = set()
    merge = status = False
    for _, name, arg in parsed.lines:
        name = ALIASES.get(name, (name, None))[0]
        status = status or name == "status"
        if name in ("merge", "link", "problem"):
            merge = merge or name == "merge"
            tickets.update(int(m.group(2)) for m in map(_REF.match, arg.split()) if m)
    return Named(frozenset(tickets), merge, status)
