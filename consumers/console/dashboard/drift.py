"""Drift: the chosen window metric per tenant / model for one field over time, drifted windows, each exchange's
distance to the baseline centroid, and the list of drifted windows (all fields).

Same sources as the Grafana board (``drift``): ``drift FINAL`` (one row per closed window and metric) and the
``scores_1m`` rollup (scorer ``drift``); drifted windows and the centroid distance are panels of the metrics
catalogue, shared with it. ``field`` (prompt | response) and ``metric`` (centroid_cosine | mmd2 |
mmd2_pvalue) are parameters.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, col, num, section, table

SERIES = "concat(tenant, ' / ', model)"


def build(ctx: Ctx) -> list[dict[str, Any]]:
    dr = ctx.where("window_end", "model")
    field = f"{dr} AND field = {{field:String}}"
    windows = ctx.rows(f"SELECT toUnixTimestamp(window_end) AS t, {SERIES} AS name, max(value) "
                       f"FROM gatewatch.drift FINAL WHERE {field} AND metric = {{metric:String}} "
                       "GROUP BY t, name ORDER BY t")
    w = ctx.window
    return [
        _per_window(ctx, windows, f"{w.metric} per tenant / model ({w.field})"),
        ctx.timeseries("drifted_windows", f"Drifted windows ({w.field})",
                       ctx.long_series(ctx.panel("drifted_windows"), additive=True), style="stacked"),
        ctx.timeseries("centroid_distance", f"Distance of each exchange to the baseline centroid ({w.field})",
                       ctx.long_series(ctx.panel("centroid_distance"), additive=False), unit="score"),
        *section("Drifted windows", [_drifted_table(ctx, dr)]),
    ]


def _per_window(ctx: Ctx, rows: list[tuple[Any, ...]], title: str) -> dict[str, Any]:
    """One point per closed window: the series share the sorted union of window end times (gaps elsewhere)."""
    times = sorted({int(t) for t, _, _ in rows})
    index = {t: i for i, t in enumerate(times)}
    by_name: dict[str, list[float | int | None]] = {}
    for t, name, value in rows:
        by_name.setdefault(str(name), [None] * len(times))[index[int(t)]] = num(value)
    series = [{"name": n, "values": v} for n, v in sorted(by_name.items())][:20]
    return ctx.timeseries("drift_metric", title, series, unit="score", style="points", w=12, time=times,
                          description="One point per closed window compared with the baseline.")


def _drifted_table(ctx: Ctx, dr: str) -> dict[str, Any]:
    rows = ctx.rows(
        "SELECT window_start, window_end, tenant, model, field, maxIf(value, metric = 'centroid_cosine'), "
        "maxIf(value, metric = 'mmd2'), maxIf(value, metric = 'mmd2_pvalue'), any(baseline_size), any(window_size) "
        f"FROM gatewatch.drift FINAL WHERE {dr} GROUP BY window_start, window_end, tenant, model, field "
        "HAVING max(drifted) = 1 ORDER BY window_end DESC LIMIT 200")
    return table("drifted_table", "Drifted windows (all fields)", [
        col("window_start", "window start", "time"), col("window_end", "window end", "time"), col("tenant"),
        col("model"), col("field"), col("centroid_cosine", "centroid cosine", "score"), col("mmd2", "MMD²", "score"),
        col("pvalue", "p-value", "score"), col("baseline_size", "baseline", "short"),
        col("window_size", "window", "short")], rows)
