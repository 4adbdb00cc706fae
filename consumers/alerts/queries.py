"""One SQL query per built-in metric, returning ``(group columns..., value)`` rows.

The formulas come from the metrics catalogue (``schemas/metrics``), the same definitions the Grafana
dashboards and the console render, always on the exact tables (``FINAL``, not the rollups that count a
redelivered batch twice). Every value reaches ClickHouse as a ``{name:Type}`` parameter (clickhouse-connect
binds them server-side or escapes them); only fixed fragments are put into the text. The window is
``(now - window, now]`` on the source's time column; ``now`` is a parameter so tests can pin the clock.
Parameters a query may use (custom_sql too): ``{now:DateTime64(3, 'UTC')}``, ``{start:DateTime64(3, 'UTC')}``,
``{window_s:UInt32}``, ``{month_start:DateTime64(3, 'UTC')}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consumers.alerts.rules import AlertRule
from schemas.metrics import SOURCES, Alerts, Query, m

DB = "gatewatch"

# rule metric -> (catalogue metric, source)
CATALOGUE: dict[str, tuple[str, str]] = {
    "error_rate": ("error_rate", "events"),
    "latency_p99_ms": ("latency_p99_ms", "events"),
    "ttft_p99_ms": ("ttft_p99_ms", "events"),
    "pii_block_rate": ("pii_block_rate", "events"),
    "toxicity_rate": ("toxicity_rate", "scored_events"),
    "contradiction_rate": ("contradiction_rate", "scores"),
    "drift_flag": ("drift_flag", "drift"),
}


def _metric(rule: AlertRule) -> tuple[str, str]:
    if rule.metric == "budget_consumption":  # the amount used; the evaluator divides it by the budget
        return ("cost_usd" if rule.budget and rule.budget.unit == "usd" else "total_tokens"), "events"
    return CATALOGUE[rule.metric]


def alert_query(rule: AlertRule) -> Query:
    """The catalogue query of a built-in rule: its metric as ``alert_value``, grouped by ``rule.group_by``."""
    metric, source = _metric(rule)
    model = SOURCES[source].model
    dims = {"tenant": "tenant", "model": "model" if model == "model" else f"{model} AS model"}
    return Query(source, (m(metric, "alert_value"),), by=tuple(dims[c] for c in rule.group_by))


def build_query(rule: AlertRule, now: datetime) -> tuple[str, dict[str, Any]]:
    """The SQL text and parameters of ``rule`` at ``now``; rows are ``(*rule.group_by, alert_value)``.

    ``budget_consumption`` returns the amount used this calendar month (UTC); the evaluator divides it
    by the tenant's budget. ``custom_sql`` is the operator's SELECT, run as written.
    """
    params: dict[str, Any] = {"now": now, "start": now - rule.window, "window_s": int(rule.window.total_seconds()),
                              "month_start": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}
    if rule.metric == "custom_sql":
        return rule.sql or "", params  # the rule validator guarantees a SELECT
    filters = {}
    for i, (column, wanted) in enumerate(sorted(rule.filter.items())):
        params[f"f{i}"] = [wanted] if isinstance(wanted, str) else list(wanted)
        filters[column] = f"f{i}"
    start = "month_start" if rule.metric == "budget_consumption" else "start"
    return Alerts(filters=filters, start=start).sql(alert_query(rule)), params
