"""Usage & cost: tokens and cost per tenant, model and key; budget consumption (UTC day, calendar month).

Every query is a panel of the metrics catalogue, shared with the Grafana board (``usage``): sums from
``events_1m``; per-key budget consumption from ``events FINAL`` (the rollup has no key), counted the way the
gateway's budgets count it.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, bars, col, section, stat, table
from schemas.metrics import Query, m

COST_SHARE_ITEMS = 30


def build(ctx: Ctx) -> list[dict[str, Any]]:
    cost, tin, tout, per_1k = ctx.one_of(Query("events_1m", (
        m("cost_usd"), m("input_tokens"), m("output_tokens"), m("cost_per_1k_requests"))))
    return [
        stat("cost", "Cost", cost, "usd"),
        stat("input_tokens", "Input tokens", tin),
        stat("output_tokens", "Output tokens", tout),
        stat("cost_per_1k", "Cost per 1k requests", per_1k, "usd"),
        *section("Over time", [
            ctx.timeseries("tokens_by_tenant", "Tokens/min by tenant",
                           ctx.long_series(ctx.panel("tokens_by_tenant"), additive=True)),
            ctx.timeseries("tokens_in_out", "Input vs output tokens",
                           ctx.wide_series(ctx.panel("tokens_in_out"), ["input", "output"], additive=True),
                           style="stacked"),
            ctx.timeseries("cost_by_model", "Cost by model", ctx.long_series(ctx.panel("cost_by_model"), additive=True),
                           unit="usd", style="stacked"),
            bars("cost_share", "Cost by tenant", ctx.panel("cost_share")[:COST_SHARE_ITEMS], "usd"),
        ]),
        *section("Budgets", [_budgets(ctx), _by_tenant_model(ctx)]),
    ]


def _budgets(ctx: Ctx) -> dict[str, Any]:
    return table("budgets", "Budget consumption per tenant and key (today UTC / this month)", [
        col("tenant"), col("key_id", "key"), col("tokens_today", "tokens today", "short"),
        col("cost_today", "cost today", "usd"), col("tokens_month", "tokens this month", "short"),
        col("cost_month", "cost this month", "usd"), col("limited_requests", "limited requests", "short")],
        ctx.panel("budgets"), description="Counted the way the gateway's key budgets count (UTC day, calendar "
        "month), independent of the time range; limits are in the keys file (`gatewatch keys list`). Limited "
        "requests: refused by a rate limit or budget.")


def _by_tenant_model(ctx: Ctx) -> dict[str, Any]:
    return table("usage_table", "Usage by tenant and model (selected range)", [
        col("tenant"), col("model"), col("requests", unit="short"), col("input_tokens", "input tokens", "short"),
        col("output_tokens", "output tokens", "short"), col("cost_usd", "cost", "usd"),
        col("cost_per_1k_requests", "cost per 1k requests", "usd")], ctx.panel("usage_table"))
