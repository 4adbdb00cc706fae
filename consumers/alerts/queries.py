"""One SQL query per built-in metric, returning ``(group columns..., value)`` rows.

Every value reaches ClickHouse as a ``{name:Type}`` parameter (clickhouse-connect binds them server-side
or escapes them); only fixed fragments from this module are put into the text. The window is
``(now - window, now]`` on the table's time column; ``now`` is a parameter so tests can pin the clock.
Parameters a query may use (custom_sql too): ``{now:DateTime64(3, 'UTC')}``, ``{start:DateTime64(3, 'UTC')}``,
``{window_s:UInt32}``, ``{month_start:DateTime64(3, 'UTC')}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.alerts.rules import AlertRule

DB = "gatewatch"
TS = "DateTime64(3, 'UTC')"


@dataclass(frozen=True, slots=True)
class MetricSource:
    table: str  # with FINAL
    time_column: str
    model_column: str
    value: str  # aggregate expression; NULL when the group has nothing to measure
    where: str = "1"


_RATE = "if(count() = 0, NULL, {cond_count} / count())"
_PII_BLOCK = "arrayExists(r -> startsWith(r, 'pii.') AND position(r, '.block.') > 0, policy_rule_ids)"
_EVENTS = f"{DB}.events FINAL"
_SCORES = f"{DB}.scores FINAL"

SOURCES: dict[str, MetricSource] = {
    "error_rate": MetricSource(_EVENTS, "ts_start", "ifNull(request_model, '')",
                               _RATE.format(cond_count="countIf(outcome = 'failed')")),
    "latency_p99_ms": MetricSource(_EVENTS, "ts_start", "ifNull(request_model, '')",
                                   "if(count() = 0, NULL, quantile(0.99)(latency_ms))"),
    "ttft_p99_ms": MetricSource(_EVENTS, "ts_start", "ifNull(request_model, '')",
                                "if(count() = 0, NULL, quantile(0.99)(ttft_ms))", "ttft_ms IS NOT NULL"),
    "pii_block_rate": MetricSource(_EVENTS, "ts_start", "ifNull(request_model, '')",
                                   _RATE.format(cond_count=f"countIf({_PII_BLOCK})")),
    # share of scored events with at least one toxicity metric labelled toxic (on any target)
    "toxicity_rate": MetricSource(
        f"(SELECT tenant, request_model, event_id, max(ts) AS last_ts, max(label = 'toxic') AS toxic FROM {_SCORES} "
        "WHERE scorer = 'toxicity' AND value IS NOT NULL AND ts > {start:%s} AND ts <= {now:%s} "
        "GROUP BY tenant, request_model, event_id)" % (TS, TS),
        "last_ts", "request_model", "if(count() = 0, NULL, avg(toxic))"),
    "contradiction_rate": MetricSource(
        _SCORES, "ts", "request_model", _RATE.format(cond_count="countIf(label = 'contradicted')"),
        "scorer = 'factuality' AND metric = 'contradiction' AND value IS NOT NULL"),
    # 1 when any drift window of the group that closed inside the alert window is flagged as drifted
    "drift_flag": MetricSource(f"{DB}.drift FINAL", "window_end", "model", "if(count() = 0, NULL, max(drifted))"),
}


def _budget_source(rule: AlertRule) -> MetricSource:
    used = "sum(ifNull(cost_usd, 0))" if rule.budget and rule.budget.unit == "usd" else "sum(ifNull(total_tokens, 0))"
    return MetricSource(_EVENTS, "ts_start", "ifNull(request_model, '')", f"toFloat64({used})")


def build_query(rule: AlertRule, now: datetime) -> tuple[str, dict[str, Any]]:
    """The SQL text and parameters of ``rule`` at ``now``; rows are ``(*rule.group_by, alert_value)``.

    ``budget_consumption`` returns the amount used this calendar month (UTC); the evaluator divides it
    by the tenant's budget. ``custom_sql`` is the operator's SELECT, run as written.
    """
    params: dict[str, Any] = {"now": now, "start": now - rule.window, "window_s": int(rule.window.total_seconds()),
                              "month_start": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}
    if rule.metric == "custom_sql":
        return rule.sql or "", params  # the rule validator guarantees a SELECT
    src = _budget_source(rule) if rule.metric == "budget_consumption" else SOURCES[rule.metric]
    start = "month_start" if rule.metric == "budget_consumption" else "start"
    columns = {"tenant": "tenant", "model": src.model_column}
    select = [f"{columns[c]} AS {c}" for c in rule.group_by]
    where = [f"{src.time_column} > {{{start}:{TS}}}", f"{src.time_column} <= {{now:{TS}}}", f"({src.where})"]
    for i, (column, wanted) in enumerate(sorted(rule.filter.items())):
        params[f"f{i}"] = [wanted] if isinstance(wanted, str) else list(wanted)
        where.append(f"{columns[column]} IN {{f{i}:Array(String)}}")
    sql = f"SELECT {', '.join([*select, f'{src.value} AS alert_value'])} FROM {src.table} WHERE {' AND '.join(where)}"
    if rule.group_by:
        sql += f" GROUP BY {', '.join(rule.group_by)}"
    return sql, params
