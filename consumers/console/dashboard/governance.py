"""Governance: policy decisions, denials by rule, PII detections by entity type, redaction volume.

Every query is a panel of the metrics catalogue, shared with the Grafana board (``governance``): ``events
FINAL`` (the rollups carry no rule or entity).
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, bars, col, section, table


def build(ctx: Ctx) -> list[dict[str, Any]]:
    return [*_policy(ctx), *_pii(ctx)]


def _policy(ctx: Ctx) -> list[dict[str, Any]]:
    return section("Policy", [
        ctx.timeseries("decisions", "Policy decisions", ctx.long_series(ctx.panel("decisions"), additive=True),
                       style="stacked"),
        bars("denials_by_rule", "Denials by rule", ctx.panel("denials_by_rule")),
        ctx.timeseries("denials_over_time", "Denials by rule over time",
                       ctx.long_series(ctx.panel("denials_over_time"), additive=True), style="stacked"),
        table("decisions_by_tenant", "Denials and flags by tenant", [
            col("tenant"), col("denied", unit="short"), col("flagged", unit="short"), col("requests", unit="short"),
            col("denial_rate", "denial rate", "percent"), col("policy_version", "policy version")],
            ctx.panel("decisions_by_tenant"), w=6),
    ])


def _pii(ctx: Ctx) -> list[dict[str, Any]]:
    volume = ctx.wide_series(ctx.panel("redaction_volume"), ["redacted requests", "redacted entities"],
                             additive=True)
    return section("PII and redaction", [
        ctx.timeseries("pii_over_time", "PII detections by entity type",
                       ctx.long_series(ctx.panel("pii_over_time"), additive=True), style="stacked"),
        bars("pii_by_entity", "PII detections by entity type (total)", ctx.panel("pii_by_entity")),
        ctx.timeseries("redaction_volume", "Redaction volume", volume,
                       description="Requests whose prompt or answer had PII replaced, and how many entities "
                       "were replaced."),
        ctx.timeseries("redacted_share", "Share of requests redacted",
                       ctx.long_series(ctx.panel("redacted_share"), additive=False), unit="percent"),
    ])
