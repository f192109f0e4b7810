"""The rule files' edge: YAML rule files -> a validated RuleSet (and SLA settings).

loader (load_rules) reads and validates rules/; conditions and actions are the registries
of what `when:` and `then:` may say (they compile to the values in daemon.pipeline.ruleset);
calendars and sla read sla.yaml; live (LiveRules, watch) keeps the current set and swaps in
reloads atomically; tester is `helpdesk rules test`. Evaluating the rules on a message is
pure and lives in the pipeline: daemon.pipeline.facts, .evaluate and .classify.
"""
from daemon.rules.live import LiveRules, watch
from daemon.rules.loader import RuleSet, load_rules

__all__ = ["LiveRules", "RuleSet", "load_rules", "watch"]
