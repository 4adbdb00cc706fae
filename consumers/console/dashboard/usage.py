"""Usage & cost: tokens and cost per tenant, model and key; budget consumption (UTC day, calendar month).

Same sources as the Grafana board (``usage``): sums from ``events_1m``; per-key budget consumption from
``events FINAL`` (the rollup has no key), counted the way the gateway's budgets count it.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, bars, col, section, stat, table


def build(ctx: Ctx) -> list[dict[str, Any]]:
    r1 = ctx.where("minute", "request_model", minute=True)
    cost, tin, tout, n = ctx.one("SELECT sum(cost_usd), sum(input_tokens), sum(output_tokens), sum(requests) "
                                 f"FROM gatewatch.events_1m WHERE {r1}")
    per_min = "* 60 / {step:UInt32}"
    tokens = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, tenant, (sum(input_tokens) + sum(output_tokens)) "
                      f"{per_min} FROM gatewatch.events_1m WHERE {r1} GROUP BY t, tenant ORDER BY t")
    in_out = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, sum(input_tokens), sum(output_tokens) "
                      f"FROM gatewatch.events_1m WHERE {r1} GROUP BY t ORDER BY t")
    cost_model = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, request_model, sum(cost_usd) "
                          f"FROM gatewatch.events_1m WHERE {r1} GROUP BY t, request_model ORDER BY t")
    share = ctx.rows(f"SELECT tenant, sum(cost_usd) AS c FROM gatewatch.events_1m WHERE {r1} GROUP BY tenant "
                     "ORDER BY c DESC LIMIT 30")
    return [
        stat("cost", "Cost", cost, "usd"),
        stat("input_tokens", "Input tokens", tin),
        stat("output_tokens", "Output tokens", tout),
        stat("cost_per_1k", "Cost per 1k requests", cost / n * 1000 if n else None, "usd"),
        *section("Over time", [
            ctx.timeseries("tokens_by_tenant", "Tokens/min by tenant", ctx.long_series(tokens, additive=True)),
            ctx.timeseries("tokens_in_out", "Input vs output tokens",
                           ctx.wide_series(in_out, ["input", "output"], additive=True), style="stacked"),
            ctx.timeseries("cost_by_model", "Cost by model", ctx.long_series(cost_model, additive=True),
                           unit="usd", style="stacked"),
            bars("cost_share", "Cost by tenant", share, "usd"),
        ]),
        *section("Budgets", [_budgets(ctx), _by_tenant_model(ctx, r1)]),
    ]


def _budgets(ctx: Ctx) -> dict[str, Any]:
    where = " AND ".join(["ts_start >= least(toStartOfMonth(now('UTC')), toStartOfDay(now('UTC')))",
                          *ctx.tenant_filter()])
    if "model" in ctx.params:
        where += " AND ifNull(request_model, '') IN {model:Array(String)}"
    today, month = "ts_start >= toStartOfDay(now('UTC'))", "ts_start >= toStartOfMonth(now('UTC'))"
    rows = ctx.rows(
        "SELECT tenant, ifNull(key_id, '(none)') AS key, "
        f"sumIf(ifNull(total_tokens, 0), {today}), sumIf(ifNull(cost_usd, 0), {today}), "
        f"sumIf(ifNull(total_tokens, 0), {month}), sumIf(ifNull(cost_usd, 0), {month}) AS cost_month, "
        "countIf(error_type IN ('budget_exceeded', 'rate_limit_exceeded')) "
        f"FROM gatewatch.events FINAL WHERE {where} GROUP BY tenant, key ORDER BY cost_month DESC LIMIT 500")
    return table("budgets", "Budget consumption per tenant and key (today UTC / this month)", [
        col("tenant"), col("key_id", "key"), col("tokens_today", "tokens today", "short"),
        col("cost_today", "cost today", "usd"), col("tokens_month", "tokens this month", "short"),
        col("cost_month", "cost this month", "usd"), col("limited_requests", "limited requests", "short")],
        rows, description="Counted the way the gateway's key budgets count (UTC day, calendar month), "
        "independent of the time range; limits are in the keys file (`gatewatch keys list`). Limited requests: "
        "refused by a rate limit or budget.")


def _by_tenant_model(ctx: Ctx, r1: str) -> dict[str, Any]:
    rows = ctx.rows("SELECT tenant, request_model AS model, sum(requests) AS n, sum(input_tokens), "
                    "sum(output_tokens), sum(cost_usd) AS c, c / greatest(n, 1) * 1000 "
                    f"FROM gatewatch.events_1m WHERE {r1} GROUP BY tenant, model ORDER BY c DESC LIMIT 500")
    return table("usage_table", "Usage by tenant and model (selected range)", [
        col("tenant"), col("model"), col("requests", unit="short"), col("input_tokens", "input tokens", "short"),
        col("output_tokens", "output tokens", "short"), col("cost_usd", "cost", "usd"),
        col("cost_per_1k_requests", "cost per 1k requests", "usd")], rows)
