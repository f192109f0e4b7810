"""The rule files' edge: YAML rule files -> a validated RuleSet (and SLA settings).

loader (load_rules) reads and validates rules/; conditions and actions are the registries
of what `when:` and `then:` may say (they compile to the values in daemon.pipeline.ruleset);
calendars reads the calendar declarations; live (LiveRules, watch; not imported here, it
loads daemon.sla too) keeps the current set and swaps in reloads atomically; tester is `helpdesk rules test`. Evaluating the rules on a message is
pure and lives in the pipeline: daemon.pipeline.facts, .evaluate and .classify.
"""
from daemon.rules.loader import RuleSet, load_rules

__all__ = ["RuleSet", "load_rules"]
