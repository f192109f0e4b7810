"""The routing rule vocabulary: YAML rule files -> validated RuleSet -> per-message decisions.

loader (load_rules, RuleSet) reads and validates rules/; conditions and actions are the
registries of what `when:` and `then:` may say; evaluate tries the rules on a message;
live (LiveRules, watch) keeps the current set and swaps in reloads atomically; tester is
`helpdesk rules test`. The pipeline stage that uses all this is `daemon.pipeline.classify`.
"""
from daemon.rules.live import LiveRules, watch
from daemon.rules.loader import RuleSet, load_rules

__all__ = ["LiveRules", "RuleSet", "load_rules", "watch"]
