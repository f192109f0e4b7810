"""`helpdesk rules test`: dry-run the routing rules on mail, changing nothing.

`rules test MESSAGE.eml [--json]` prints the routing decision and its reasons: every
rule tried, hit or missed and why, what each hit set, and what came from defaults.
`rules test --corpus DIR --expect FILE` routes every `*.eml` in DIR and compares the
outcome with FILE (YAML or JSON: file name -> expected fields such as type, queue,
priority, tags); exit 1 listing every mismatch. Messages are routed as new tickets
(`--reply`: as replies) at the time of their Date header (`--at` overrides; no Date:
now), so a corpus gives the same answer on any day. A CLI edge: reads files, prints.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from daemon.errors import HelpdeskError, RulesError
from daemon.model import ParsedMessage, Routing, ThreadDecision
from daemon.pipeline.classify import Defaults, classify_explained
from daemon.pipeline.evaluate import show
from daemon.pipeline.parse import parse
from daemon.rules.loader import RuleSet, load_rules
from daemon.rules.yamlload import YamlProblem, YDict, parse_yaml, read_bytes
from daemon.sla.loader import SLA_FILE, load_sla
from daemon.sla.views import preview_text, sla_preview
from daemon.cli_args import add_rules_parser  # noqa: F401 - also importable from here (its tests)
from daemon.templates import template_names  # noqa: F401 - also importable from here

EX_OK, EX_FAIL, EX_USAGE = 0, 1, 2
EXPECTABLE = ("type", "queue", "priority", "tags", "assignee", "action", "disposition", "service", "impact",
              "urgency", "suppress_ack", "ack_template", "sla_policy")


def run_rules_command(cfg: Any, args: Any) -> int:
    """Run `helpdesk rules ...`; returns the exit status."""
    if getattr(args, "rules_command", "test") != "test":
        return _usage(f"unknown rules command {args.rules_command!r}")
    if bool(args.corpus) == bool(args.message) or bool(args.corpus) != bool(args.expect):
        return _usage("give either MESSAGE.eml, or --corpus DIR with --expect FILE")
    defaults = Defaults(cfg.helpdesk.default_type, cfg.helpdesk.default_queue, cfg.helpdesk.default_priority)
    rules_dir = Path(args.rules) if args.rules else cfg.paths.rules
    try:
        at = _parse_at(args.at)
        rules = load_rules(rules_dir, known_templates=template_names(cfg.paths.templates), defaults=defaults)
        sla = load_sla(rules_dir, rules) if (rules_dir / SLA_FILE).exists() else None
    except RulesError as exc:
        for line in exc.problems:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"helpdesk: the rules in {rules_dir} do not load ({len(exc.problems)} problem(s))\n")
        return EX_FAIL
    except ValueError as exc:
        return _usage(str(exc))
    opts = {"at": at, "reply": args.reply, "rcpts": tuple(args.rcpt), "sla": sla}
    if args.corpus:
        return _run_corpus(rules, defaults, Path(args.corpus), Path(args.expect), args.json, opts)
    return _run_one(rules, defaults, Path(args.message), args.json, opts)


def _usage(text: str) -> int:
    sys.stderr.write(f"helpdesk: rules test: {text}\n")
    return EX_USAGE


def _parse_at(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at: not an ISO time: {text!r} (e.g. 2026-03-02T09:30+00:00)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


# ------------------------------------------------------------------ routing one message
def route_file(rules: RuleSet, defaults: Any, path: Path, opts: dict) -> tuple[Routing, Any, ParsedMessage, str]:
    """(routing, evaluation, message, how the time was chosen) for one .eml file."""
    msg = parse(path.read_bytes())
    now, source = _when(msg, opts["at"])
    decision = ThreadDecision("append", 0, "rules test --reply") if opts["reply"] else \
        ThreadDecision("new", None, "rules test: routed as a new ticket")
    routing, ev = classify_explained(msg, decision, rules, defaults, now=now, envelope_rcpts=opts["rcpts"])
    return routing, ev, msg, f"{now.isoformat()} ({source})"


def _when(msg: ParsedMessage, at: datetime | None) -> tuple[datetime, str]:
    if at is not None:
        return at, "--at"
    if msg.date is not None:
        return (msg.date if msg.date.tzinfo else msg.date.replace(tzinfo=timezone.utc)), "Date header"
    return datetime.now(timezone.utc), "now: the mail has no Date"


def routing_json(r: Routing) -> dict[str, Any]:
    return {"type": r.type, "queue": r.queue, "priority": r.priority, "tags": list(r.tags),
            "assignee": r.assignee, "action": r.action, "service": r.service, "impact": r.impact,
            "urgency": r.urgency, "suppress_ack": r.suppress_ack, "ack_template": r.ack_template,
            "sla_policy": r.sla_policy, "decided": list(r.decided), "rules_version": r.rules_version,
            "hits": list(r.hits), "misses": list(r.misses)}


def explain_json(routing: Routing, ev: Any, when: str, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"file": str(path), "at": when, "routing": routing_json(routing)}
    if ev is not None:
        out.update(event=ev.event, stopped_by=ev.stopped_by, untried=ev.untried, overridden=list(ev.overridden),
                   trials=[{"rule": r.name, "where": r.where, "hit": hit, "reason": why, "continue": r.cont}
                           for r, hit, why in ev.trials])
    return out


def explain_text(routing: Routing, ev: Any, when: str, path: Path) -> str:
    lines = [f"{path}: routed as {'a reply' if ev and ev.event == 'reply' else 'a new ticket'} at {when}",
             f"rules version {routing.rules_version}", ""]
    lines += [f"  {h}" for h in routing.hits if h.startswith("builtin:")]
    for rule, hit, why in (ev.trials if ev else ()):
        cont = "  (continue)" if hit and rule.cont else ""
        sets = " -> " + ", ".join(f"{e.field}={_show(e.value)}" for e in rule.effects) if hit else ""
        lines.append(f"  {'HIT ' if hit else 'miss'}  {rule.where} {rule.name}: {why}{sets}{cont}")
    if ev and ev.untried:
        lines.append(f"  ({ev.untried} later rule(s) not tried: {ev.stopped_by!r} matched and stops)")
    lines += [f"  {o}" for o in (ev.overridden if ev else ())]
    lines += ["", "decision:"]
    for name in ("type", "queue", "priority", "impact", "urgency", "tags", "assignee", "service", "sla_policy",
                 "action", "suppress_ack", "ack_template"):
        value = getattr(routing, name)
        by = ev.set_by.get({"action": "disposition", "ack_template": "ack"}.get(name, name)) if ev else None
        origin = f"rule {by}" if by else ("matrix" if name == "priority" and "priority" in routing.decided
                                          else "service" if name in routing.decided else "default")
        lines.append(f"  {name:<13} {_show(value):<20} {origin}")
    lines += [f"  {h}" for h in routing.hits if h.startswith(("default:", "priority:", "service ", "assign:"))]
    return "\n".join(lines)


def _show(value: Any) -> str:
    return "-" if value is None or value == () else show(value)


def _run_one(rules: RuleSet, defaults: Any, path: Path, as_json: bool, opts: dict) -> int:
    try:
        routing, ev, msg, when = route_file(rules, defaults, path, opts)
    except (OSError, HelpdeskError) as exc:
        sys.stderr.write(f"helpdesk: {path}: {exc}\n")
        return EX_FAIL
    out, text = explain_json(routing, ev, when, path), explain_text(routing, ev, when, path)
    if opts.get("sla") is not None and not opts["reply"] and routing.action == "ticket":   # the SLA timers
        out["sla"] = sla_preview(opts["sla"], routing, msg.from_addr.email if msg.from_addr else None,
                                 _when(msg, opts["at"])[0])
        text += "\n\n" + "\n".join(preview_text(out["sla"]))
    sys.stdout.write((json.dumps(out, ensure_ascii=False, indent=1) if as_json else text) + "\n")
    return EX_OK


# ------------------------------------------------------------------ corpus
def load_expectations(path: Path) -> dict[str, dict[str, Any]]:
    """file name -> expected fields; raises ValueError naming file:line for a bad entry."""
    try:
        data = json.loads(read_bytes(path)) if path.suffix == ".json" else parse_yaml(read_bytes(path))
    except YamlProblem as exc:
        raise ValueError(f"{path}:{exc.line}: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}:1: expected a mapping of file name -> expected fields")
    for name, want in data.items():
        line = data.line_of(name) if isinstance(data, YDict) else 1
        if not isinstance(want, dict) or not want:
            raise ValueError(f"{path}:{line}: {name}: expected a mapping of fields ({', '.join(EXPECTABLE)})")
        for key in want:
            if key not in EXPECTABLE:
                raise ValueError(f"{path}:{line}: {name}: cannot expect {key!r}; use {', '.join(EXPECTABLE)}")
    return {str(k): dict(v) for k, v in data.items()}


def compare(routing: Routing, want: dict[str, Any]) -> list[str]:
    """Mismatches as 'field: expected X, got Y' (tags compare as sets)."""
    out = []
    for key, expected in want.items():
        got = getattr(routing, "action" if key == "disposition" else key)
        if key == "tags":
            expected = [expected] if isinstance(expected, str) else expected
            same = set(expected or ()) == set(got)
        else:
            same = expected == got
        if not same:
            out.append(f"{key}: expected {_show(expected)}, got {_show(got)}")
    return out


def _run_corpus(rules: RuleSet, defaults: Any, corpus: Path, expect: Path, as_json: bool, opts: dict) -> int:
    try:
        wanted = load_expectations(expect)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"helpdesk: {exc}\n")
        return EX_FAIL
    if not corpus.is_dir():
        return _usage(f"--corpus: not a directory: {corpus}")
    files = {p.name: p for p in sorted(corpus.glob("*.eml"))}
    results: list[dict[str, Any]] = []
    for name in sorted(set(files) | set(wanted)):
        results.append(_check_one(rules, defaults, files.get(name), name, wanted.get(name), opts))
    failed = [r for r in results if r["status"] == "fail"]
    if as_json:
        sys.stdout.write(json.dumps({"rules_version": rules.version, "results": results,
                                     "failed": len(failed)}, ensure_ascii=False, indent=1) + "\n")
    else:
        for r in results:
            head = {"ok": "ok  ", "fail": "FAIL", "unchecked": "----"}[r["status"]]
            sys.stdout.write(f"{head} {r['file']}" + (": " + "; ".join(r["problems"]) if r["problems"] else "") + "\n")
        checked = sum(1 for r in results if r["status"] != "unchecked")
        sys.stdout.write(f"{checked - len(failed)}/{checked} as expected (rules version {rules.version})\n")
    return EX_FAIL if failed else EX_OK


def _check_one(rules: RuleSet, defaults: Any, path: Path | None, name: str, want: dict | None,
               opts: dict) -> dict[str, Any]:
    if path is None:
        return {"file": name, "status": "fail", "problems": ["expected, but no such file in the corpus"]}
    try:
        routing, _, _, _ = route_file(rules, defaults, path, opts)
    except (OSError, HelpdeskError) as exc:
        return {"file": name, "status": "fail", "problems": [f"cannot route: {exc}"]}
    if want is None:
        return {"file": name, "status": "unchecked", "problems": ["no expectation"],
                "routing": routing_json(routing)}
    problems = compare(routing, want)
    return {"file": name, "status": "fail" if problems else "ok", "problems": problems,
            "routing": routing_json(routing)}
