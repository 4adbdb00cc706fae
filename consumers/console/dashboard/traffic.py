"""Traffic: requests/s, outcomes, latency and TTFT percentiles, errors by type, breakdown by tenant/model/upstream.

Same sources as the Grafana board (dashboards/grafana/build.py ``traffic``): counters from the ``events_1m``
rollup, exact percentiles and error types from ``events FINAL``.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, col, section, stat, table

UPSTREAM = "if(deployment = '', '(none)', deployment)"


def build(ctx: Ctx) -> list[dict[str, Any]]:
    r1 = ctx.where("minute", "request_model", minute=True)
    ev = ctx.where("ts_start", "ifNull(request_model, '')")
    return [*_stats(ctx, r1, ev), *_throughput(ctx, r1), *_latency(ctx, r1, ev), *_errors(ctx, ev),
            *_breakdown(ctx, r1)]


def _stats(ctx: Ctx, r1: str, ev: str) -> list[dict[str, Any]]:
    requests, errors = ctx.one(f"SELECT sum(requests), sum(errors) FROM gatewatch.events_1m WHERE {r1}")
    p95, ttft95 = ctx.one("SELECT quantile(0.95)(latency_ms), quantileIf(0.95)(ttft_ms, stream AND ttft_ms "
                          f"IS NOT NULL) FROM gatewatch.events FINAL WHERE {ev}")
    return [stat("requests", "Requests", requests),
            stat("error_rate", "Error rate", errors / requests if requests else None, "percent",
                 description="Failed requests (upstream errors, timeouts) over all requests."),
            stat("latency_p95", "Latency p95", p95, "ms"),
            stat("ttft_p95", "TTFT p95 (streams)", ttft95, "ms")]


def _rps(ctx: Ctx, r1: str, pid: str, title: str, by: str, description: str = "") -> dict[str, Any]:
    rows = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, {by} AS name, sum(requests) / {{step:UInt32}} "
                    f"FROM gatewatch.events_1m WHERE {r1} GROUP BY t, name ORDER BY t")
    return ctx.timeseries(pid, title, ctx.long_series(rows, additive=True), unit="reqps", description=description)


def _throughput(ctx: Ctx, r1: str) -> list[dict[str, Any]]:
    outcomes = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, sum(requests) - sum(errors) - sum(denials), "
                        f"sum(errors), sum(denials) FROM gatewatch.events_1m WHERE {r1} GROUP BY t ORDER BY t")
    return section("Throughput", [
        _rps(ctx, r1, "rps_by_tenant", "Requests/s by tenant", "tenant"),
        _rps(ctx, r1, "rps_by_model", "Requests/s by model", "request_model"),
        _rps(ctx, r1, "rps_by_upstream", "Requests/s by upstream deployment", UPSTREAM,
             "(none): the request never reached an upstream (denied, invalid, no deployment)."),
        ctx.timeseries("outcomes", "Outcomes", ctx.wide_series(outcomes, ["completed", "failed", "denied"],
                                                               additive=True), style="stacked"),
    ])


def _latency(ctx: Ctx, r1: str, ev: str) -> list[dict[str, Any]]:
    q = "quantile(0.5)({c}), quantile(0.95)({c}), quantile(0.99)({c})"
    lat = ctx.rows(f"SELECT {ctx.bucket('ts_start')} AS t, {q.format(c='latency_ms')} FROM gatewatch.events "
                   f"FINAL WHERE {ev} GROUP BY t ORDER BY t")
    ttft = ctx.rows(f"SELECT {ctx.bucket('ts_start')} AS t, {q.format(c='ttft_ms')} FROM gatewatch.events "
                    f"FINAL WHERE {ev} AND stream AND ttft_ms IS NOT NULL GROUP BY t ORDER BY t")
    up = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, {UPSTREAM} AS name, "
                  f"quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms)[3] FROM gatewatch.events_1m WHERE {r1} "
                  "GROUP BY t, name ORDER BY t")
    names = ["p50", "p95", "p99"]
    return section("Latency", [
        ctx.timeseries("latency", "Latency p50 / p95 / p99", ctx.wide_series(lat, names, additive=False),
                       unit="ms", w=4, description="Request duration to the last byte (exact quantiles)."),
        ctx.timeseries("ttft", "Time to first token p50 / p95 / p99 (streams)",
                       ctx.wide_series(ttft, names, additive=False), unit="ms", w=4),
        ctx.timeseries("latency_p99_by_upstream", "Latency p99 by upstream deployment",
                       ctx.long_series(up, additive=False), unit="ms", w=4,
                       description="t-digest p99 from the per-minute rollup."),
    ])


def _errors(ctx: Ctx, ev: str) -> list[dict[str, Any]]:
    failed = f"{ev} AND outcome = 'failed'"
    by_type = ctx.rows(f"SELECT {ctx.bucket('ts_start')} AS t, ifNull(error_type, 'unknown') AS name, count() "
                       f"FROM gatewatch.events FINAL WHERE {failed} GROUP BY t, name ORDER BY t")
    rows = ctx.rows("SELECT ifNull(error_type, 'unknown') AS error_type, ifNull(deployment, '(none)') AS upstream, "
                    "tenant, count() AS errors, max(ts_start) AS last_seen FROM gatewatch.events FINAL "
                    f"WHERE {failed} GROUP BY error_type, upstream, tenant ORDER BY errors DESC LIMIT 100")
    return section("Errors", [
        ctx.timeseries("errors_by_type", "Errors by type", ctx.long_series(by_type, additive=True),
                       style="stacked"),
        table("errors_table", "Errors by type and upstream",
              [col("error_type", "error type"), col("upstream"), col("tenant"), col("errors", unit="short"),
               col("last_seen", "last seen", "time")], rows, w=6),
    ])


def _breakdown(ctx: Ctx, r1: str) -> list[dict[str, Any]]:
    q = "quantilesTDigestMerge(0.5, 0.9, 0.99)"
    rows = ctx.rows(f"SELECT tenant, request_model AS model, {UPSTREAM} AS upstream, sum(requests) AS n, "
                    "sum(errors) AS e, e / greatest(n, 1), sum(denials), "
                    f"{q}(latency_ms)[1], {q}(latency_ms)[3], {q}(ttft_ms)[3] FROM gatewatch.events_1m "
                    f"WHERE {r1} GROUP BY tenant, model, upstream ORDER BY n DESC LIMIT 500")
    return section("Breakdown", [table("breakdown", "By tenant, model and upstream", [
        col("tenant"), col("model"), col("upstream"), col("requests", unit="short"), col("errors", unit="short"),
        col("error_rate", "error rate", "percent"), col("denials", unit="short"),
        col("latency_p50", "latency p50", "ms"), col("latency_p99", "latency p99", "ms"),
        col("ttft_p99", "TTFT p99", "ms")], rows)])
