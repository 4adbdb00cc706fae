"""Governance: policy decisions, denials by rule, PII detections by entity type, redaction volume.

Same sources as the Grafana board (``governance``): ``events FINAL`` (the rollups carry no rule or entity).
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, bars, col, section, table

RULE = "arrayJoin(if(empty(policy_rule_ids), ['(no rule)'], policy_rule_ids))"
PII_JOIN = "ARRAY JOIN mapKeys(pii_counts) AS entity, mapValues(pii_counts) AS n"


def build(ctx: Ctx) -> list[dict[str, Any]]:
    ev = ctx.where("ts_start", "ifNull(request_model, '')")
    return [*_policy(ctx, ev), *_pii(ctx, ev)]


def _policy(ctx: Ctx, ev: str) -> list[dict[str, Any]]:
    t = ctx.bucket("ts_start")
    deny = f"{ev} AND policy_decision = 'deny'"
    decisions = ctx.rows(f"SELECT {t} AS t, policy_decision, count() FROM gatewatch.events FINAL WHERE {ev} "
                         "GROUP BY t, policy_decision ORDER BY t")
    by_rule = ctx.rows(f"SELECT {RULE} AS rule, count() AS n FROM gatewatch.events FINAL WHERE {deny} "
                       "GROUP BY rule ORDER BY n DESC, rule LIMIT 30")
    rule_time = ctx.rows(f"SELECT {t} AS t, {RULE} AS rule, count() FROM gatewatch.events FINAL WHERE {deny} "
                         "GROUP BY t, rule ORDER BY t")
    tenants = ctx.rows("SELECT tenant, countIf(policy_decision = 'deny') AS d, countIf(policy_decision = 'flag'), "
                       "count(), d / count(), anyLast(policy_version) FROM gatewatch.events FINAL "
                       f"WHERE {ev} GROUP BY tenant ORDER BY d DESC, tenant LIMIT 500")
    return section("Policy", [
        ctx.timeseries("decisions", "Policy decisions", ctx.long_series(decisions, additive=True), style="stacked"),
        bars("denials_by_rule", "Denials by rule", by_rule),
        ctx.timeseries("denials_over_time", "Denials by rule over time", ctx.long_series(rule_time, additive=True),
                       style="stacked"),
        table("decisions_by_tenant", "Denials and flags by tenant", [
            col("tenant"), col("denied", unit="short"), col("flagged", unit="short"), col("requests", unit="short"),
            col("denial_rate", "denial rate", "percent"), col("policy_version", "policy version")], tenants, w=6),
    ])


def _pii(ctx: Ctx, ev: str) -> list[dict[str, Any]]:
    t = ctx.bucket("ts_start")
    over_time = ctx.rows(f"SELECT {t} AS t, entity, sum(n) FROM gatewatch.events FINAL {PII_JOIN} WHERE {ev} "
                         "GROUP BY t, entity ORDER BY t")
    total = ctx.rows(f"SELECT entity, sum(n) AS d FROM gatewatch.events FINAL {PII_JOIN} WHERE {ev} "
                     "GROUP BY entity ORDER BY d DESC, entity")
    volume = ctx.rows(f"SELECT {t} AS t, countIf(notEmpty(pii_counts)), sum(arraySum(mapValues(pii_counts))) "
                      f"FROM gatewatch.events FINAL WHERE {ev} GROUP BY t ORDER BY t")
    share = ctx.rows(f"SELECT {t} AS t, tenant, countIf(notEmpty(pii_counts)) / count() FROM gatewatch.events "
                     f"FINAL WHERE {ev} GROUP BY t, tenant ORDER BY t")
    return section("PII and redaction", [
        ctx.timeseries("pii_over_time", "PII detections by entity type", ctx.long_series(over_time, additive=True),
                       style="stacked"),
        bars("pii_by_entity", "PII detections by entity type (total)", total),
        ctx.timeseries("redaction_volume", "Redaction volume",
                       ctx.wide_series(volume, ["redacted requests", "redacted entities"], additive=True),
                       description="Requests whose prompt or answer had PII replaced, and how many entities "
                       "were replaced."),
        ctx.timeseries("redacted_share", "Share of requests redacted", ctx.long_series(share, additive=False),
                       unit="percent"),
    ])
