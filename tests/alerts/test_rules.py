"""Rules file validation (every error at once) and the pure state machine (pending, dedup, cooldown)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from consumers.alerts.rules import RulesError, format_duration, load_rules, parse_duration, parse_rules
from consumers.alerts.state import AlertTracker
from tests.alerts.conftest import NOW

BAD = """
webhooks:
  ops: {url: ftp://nope, kind: teams}
rules:
  - id: a
    metric: error_rte
    threshold: 0.1
  - id: a
    metric: error_rate
    threshold: high
    window: 5 minutes
    notify: [pagerduty]
  - id: b
    metric: budget_consumption
    threshold: 0.8
    group_by: [model]
    summary: "{nope}"
  - id: c
    metric: custom_sql
    threshold: 1
    sql: DROP TABLE gatewatch.events
    surprise: 1
"""


def test_invalid_rules_file_lists_every_error(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(BAD)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    text = "\n".join(info.value.errors)
    for needle in ("webhooks.ops.url", "webhooks.ops.kind", "rules.0.metric", "rules.1.threshold", "rules.1.window",
                   "rules.2.summary", "rules.3.surprise"):
        assert needle in text, (needle, text)
    assert len(info.value.errors) >= 7
    # cross-field checks run once the fields are valid
    with pytest.raises(RulesError) as info:
        parse_rules({"rules": [
            {"id": "x", "metric": "error_rate", "threshold": 0.1, "notify": ["pagerduty"]},
            {"id": "x", "metric": "custom_sql", "threshold": 1, "sql": "DROP TABLE t"},
            {"id": "y", "metric": "budget_consumption", "threshold": 0.8, "group_by": ["model"]}]})
    text = "\n".join(info.value.errors)
    assert "custom_sql needs sql" in text and "needs budget" in text and "must group by tenant" in text
    with pytest.raises(RulesError) as info:
        parse_rules({"rules": [{"id": "x", "metric": "error_rate", "threshold": 0.1, "notify": ["pagerduty"]},
                               {"id": "x", "metric": "error_rate", "threshold": 0.2}]})
    assert "repeated: ['x']" in info.value.errors[0] and "unknown webhooks ['pagerduty']" in info.value.errors[0]
    path.write_text("rules: [\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(path)


def test_valid_rules_parse_durations_and_for() -> None:
    rules = parse_rules({"webhooks": {"ops": {"url": "http://x/hook"}}, "rules": [
        {"id": "e", "metric": "error_rate", "threshold": 0.1, "window": "15m", "for": 2, "cooldown": "1h",
         "notify": ["ops"], "filter": {"tenant": ["acme", "globex"]}}]})
    rule = rules.rules[0]
    assert (rule.window, rule.cooldown, rule.for_) == (timedelta(minutes=15), timedelta(hours=1), 2)


def test_state_machine_pending_dedup_resolve_cooldown() -> None:
    rule = parse_rules({"rules": [{"id": "e", "metric": "error_rate", "threshold": 0.5, "for": 1,
                                   "cooldown": "10m"}]}).rules[0]
    tracker, group = AlertTracker(), (("tenant", "acme"),)
    minute = timedelta(minutes=1)
    steps = [(0.9, None), (0.9, "firing"), (0.9, None), (0.1, "resolved"),  # for=1: fires on the 2nd breach
             (0.9, None), (0.9, None),  # cooldown: suppressed
             (None, None), (0.9, None), (0.9, "firing")]  # after the cooldown: pending again, then fires
    seen = []
    for i, (value, _) in enumerate(steps):
        now = NOW + i * minute * (1 if i < 6 else 5)
        t = tracker.observe(rule, group, value, now, now)
        seen.append(t.state if t else None)
    assert seen == [s for _, s in steps]
    assert tracker.suppressed == 2
    assert tracker.firing() == {"e": 1}


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("90s", 90)])
def test_durations_round_trip(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(parse_duration(text))) == timedelta(seconds=seconds)


def test_summary_template_fields() -> None:
    from consumers.alerts.state import Transition

    rule = parse_rules({"rules": [{"id": "e", "metric": "error_rate", "threshold": 0.05, "window": "15m",
                                   "summary": "{tenant}/{model}: {value} {op} {threshold} over {window}"}]}).rules[0]
    t = Transition("id", rule, (("model", "m1"), ("tenant", "acme")), "firing", 0.123456, NOW, None, NOW)
    assert t.summary == "acme/m1: 0.1235 > 0.05 over 15m"
    with pytest.raises(RulesError, match="summary template"):
        parse_rules({"rules": [{"id": "e", "metric": "error_rate", "threshold": 1, "summary": "{rule.x}"}]})
