"""Alerts: the ``alerts`` table of the worker's alert evaluator (``FINAL``: the latest state of each alert).

Shown: alerts that started in the window plus every alert still firing. Scoping by the alert's ``tenant``
group label (and ``model`` likewise, alerts without a model group included): an admin token filtering by
tenant also sees alerts without a tenant group (as the Grafana board does); a tenant-scoped token sees only
alerts grouped by one of its tenants, since a global alert's value and summary cover every tenant.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import DT, Ctx, col, section, stat, table

TENANT = "group_labels['tenant']"
MODEL = "group_labels['model']"


def _where(ctx: Ctx) -> str:
    conds = [f"((started_at >= {{start:{DT}}} AND started_at < {{end:{DT}}}) OR state = 'firing')"]
    if "scope" in ctx.params:
        conds.append(f"{TENANT} IN {{scope:Array(String)}}")
    if "tenant" in ctx.params:
        conds.append(f"({TENANT} IN {{tenant:Array(String)}}" + (")" if "scope" in ctx.params
                                                                  else f" OR {TENANT} = '')"))
    if "model" in ctx.params:
        conds.append(f"({MODEL} IN {{model:Array(String)}} OR {MODEL} = '')")
    return " AND ".join(conds)


def build(ctx: Ctx) -> list[dict[str, Any]]:
    where = _where(ctx)
    firing, in_range, critical = ctx.one(
        f"SELECT countIf(state = 'firing'), countIf(started_at >= {{start:{DT}}} AND started_at < {{end:{DT}}}), "
        f"countIf(state = 'firing' AND severity = 'critical') FROM gatewatch.alerts FINAL WHERE {where}")
    started = ctx.rows(f"SELECT {ctx.bucket('started_at')} AS t, severity, count() FROM gatewatch.alerts FINAL "
                       f"WHERE {where} AND started_at >= {{start:{DT}}} GROUP BY t, severity ORDER BY t")
    rows = ctx.rows("SELECT started_at, state, severity, rule_id, metric, group_key, op, threshold, value, "
                    f"resolved_at, summary FROM gatewatch.alerts FINAL WHERE {where} "
                    "ORDER BY state = 'firing' DESC, started_at DESC LIMIT 200")
    return [
        stat("firing", "Alerts firing", firing, w=4),
        stat("critical", "Critical firing", critical, w=4),
        stat("started", "Alerts started in range", in_range, w=4),
        ctx.timeseries("alerts_started", "Alerts started, by severity", ctx.long_series(started, additive=True),
                       style="stacked", w=12),
        *section("Alerts", [table("alerts", "Alerts (firing first, then most recent)", [
            col("started_at", "started", "time"), col("state", badge=True), col("severity", badge=True),
            col("rule_id", "rule"), col("metric"), col("group_key", "group"), col("op"),
            col("threshold", unit="number"), col("value", unit="number"), col("resolved_at", "resolved", "time"),
            col("summary")], rows, description="From the worker's alert evaluator (rules in alerts.yaml).")]),
    ]
