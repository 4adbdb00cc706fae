"""Traffic: requests/s, outcomes, latency and TTFT percentiles, errors by type, breakdown by tenant/model/upstream.

Every query is a panel of the metrics catalogue (``schemas/metrics/panels.py``), the one the Grafana board
(dashboards/grafana/build.py ``traffic``) renders too: counters from the ``events_1m`` rollup, exact
percentiles and error types from ``events FINAL``.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, col, section, stat, table
from schemas.metrics import Query, m


def build(ctx: Ctx) -> list[dict[str, Any]]:
    return [*_stats(ctx), *_throughput(ctx), *_latency(ctx), *_errors(ctx), *_breakdown(ctx)]


def _stats(ctx: Ctx) -> list[dict[str, Any]]:
    """One query per source for the four figures (the same metrics as the Grafana stat panels)."""
    requests, error_rate = ctx.one_of(Query("events_1m", (m("requests"), m("error_rate"))))
    p95, ttft95 = ctx.one_of(Query("events", (m("latency_p95_ms"), m("ttft_p95_ms"))))
    return [stat("requests", "Requests", requests),
            stat("error_rate", "Error rate", error_rate, "percent",
                 description="Failed requests (upstream errors, timeouts, budget and rate limits) over all "
                             "requests, denials included."),
            stat("latency_p95", "Latency p95", p95, "ms"),
            stat("ttft_p95", "TTFT p95 (streams)", ttft95, "ms")]


def _rps(ctx: Ctx, pid: str, title: str, description: str = "") -> dict[str, Any]:
    return ctx.timeseries(pid, title, ctx.long_series(ctx.panel(pid), additive=True), unit="reqps",
                          description=description)


def _throughput(ctx: Ctx) -> list[dict[str, Any]]:
    outcomes = ctx.wide_series(ctx.panel("outcomes"), ["completed", "failed", "denied"], additive=True)
    return section("Throughput", [
        _rps(ctx, "rps_by_tenant", "Requests/s by tenant"),
        _rps(ctx, "rps_by_model", "Requests/s by model"),
        _rps(ctx, "rps_by_upstream", "Requests/s by upstream deployment",
             "(none): the request never reached an upstream (denied, invalid, no deployment)."),
        ctx.timeseries("outcomes", "Outcomes", outcomes, style="stacked"),
    ])


def _latency(ctx: Ctx) -> list[dict[str, Any]]:
    names = ["p50", "p95", "p99"]
    return section("Latency", [
        ctx.timeseries("latency", "Latency p50 / p95 / p99", ctx.wide_series(ctx.panel("latency"), names,
                                                                             additive=False),
                       unit="ms", w=4, description="Request duration to the last byte (exact quantiles)."),
        ctx.timeseries("ttft", "Time to first token p50 / p95 / p99 (streams)",
                       ctx.wide_series(ctx.panel("ttft"), names, additive=False), unit="ms", w=4),
        ctx.timeseries("latency_p99_by_upstream", "Latency p99 by upstream deployment",
                       ctx.long_series(ctx.panel("latency_p99_by_upstream"), additive=False), unit="ms", w=4,
                       description="t-digest p99 from the per-minute rollup."),
    ])


def _errors(ctx: Ctx) -> list[dict[str, Any]]:
    return section("Errors", [
        ctx.timeseries("errors_by_type", "Errors by type", ctx.long_series(ctx.panel("errors_by_type"), additive=True),
                       style="stacked"),
        table("errors_table", "Errors by type and upstream",
              [col("error_type", "error type"), col("upstream"), col("tenant"), col("errors", unit="short"),
               col("last_seen", "last seen", "time")], ctx.panel("errors_table"), w=6),
    ])


def _breakdown(ctx: Ctx) -> list[dict[str, Any]]:
    return section("Breakdown", [table("breakdown", "By tenant, model and upstream", [
        col("tenant"), col("model"), col("upstream"), col("requests", unit="short"), col("errors", unit="short"),
        col("error_rate", "error rate", "percent"), col("denials", unit="short"),
        col("latency_p50", "latency p50", "ms"), col("latency_p99", "latency p99", "ms"),
        col("ttft_p99", "TTFT p99", "ms")], ctx.panel("breakdown"))])
