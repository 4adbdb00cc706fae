"""Quality & safety: toxicity distribution and rate over a threshold, factuality support/contradiction, and the
worst examples with their audit entry (``event_id``, ``tenant``, ``ts_start``: the page opens it in the
audit browser).

Same sources as the Grafana board (``quality``): ``scores FINAL`` and the ``scores_1m`` rollup.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, col, histogram, section, stat, table

TOX = "scorer = 'toxicity' AND metric = 'toxicity' AND value IS NOT NULL"
BUCKETS = [f"{i / 10:.1f}" for i in range(10)]


def build(ctx: Ctx) -> list[dict[str, Any]]:
    sc = ctx.where("ts", "request_model")
    r1 = ctx.where("minute", "request_model", minute=True)
    return [*_stats(ctx, sc), *_toxicity(ctx, sc, r1), *_factuality(ctx, sc, r1), *_worst(ctx, sc)]


def _stats(ctx: Ctx, sc: str) -> list[dict[str, Any]]:
    over = "value >= {threshold:Float64}"
    tox_p, tox_r, contra, unsup = ctx.one(
        f"SELECT avgIf({over}, {TOX} AND target = 'prompt'), avgIf({over}, {TOX} AND target = 'response'), "
        "avgIf(label = 'contradicted', scorer = 'factuality' AND metric = 'contradiction' AND value IS NOT NULL), "
        "avgIf(label = 'unsupported', scorer = 'factuality' AND metric = 'support' AND value IS NOT NULL) "
        f"FROM gatewatch.scores FINAL WHERE {sc}")
    thr = f"{ctx.window.threshold:g}"
    return [stat("toxic_prompts", f"Toxic prompts (≥ {thr})", tox_p, "percent"),
            stat("toxic_responses", f"Toxic answers (≥ {thr})", tox_r, "percent"),
            stat("contradicted", "Contradicted answers", contra, "percent",
                 description="Share of answers with context whose worst sentence contradicts it."),
            stat("unsupported", "Unsupported answers", unsup, "percent",
                 description="Share of answers with context that the context does not support.")]


def _toxicity(ctx: Ctx, sc: str, r1: str) -> list[dict[str, Any]]:
    dist = ctx.rows("SELECT least(toUInt8(floor(value * 10)), 9) AS b, countIf(target = 'prompt'), "
                    f"countIf(target = 'response') FROM gatewatch.scores FINAL WHERE {sc} AND {TOX} GROUP BY b")
    counts = {int(b): (p, r) for b, p, r in dist}
    series = [{"name": name, "values": [counts.get(i, (0, 0))[k] for i in range(10)]}
              for k, name in enumerate(("prompt", "response"))]
    over = ctx.rows(f"SELECT {ctx.bucket('ts')} AS t, target, avg(value >= {{threshold:Float64}}) "
                    f"FROM gatewatch.scores FINAL WHERE {sc} AND {TOX} GROUP BY t, target ORDER BY t")
    labels = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, concat(metric, ' / ', target) AS label, "
                      f"avgMerge(value_avg) FROM gatewatch.scores_1m WHERE {r1} AND scorer = 'toxicity' "
                      "GROUP BY t, label ORDER BY t")
    tenants = ctx.rows("SELECT tenant, target, count(), avg(value), avg(value >= {threshold:Float64}) AS o "
                       f"FROM gatewatch.scores FINAL WHERE {sc} AND {TOX} GROUP BY tenant, target "
                       "ORDER BY o DESC, tenant, target LIMIT 500")
    thr = f"{ctx.window.threshold:g}"
    return section("Toxicity", [
        histogram("toxicity_distribution", "Toxicity distribution", BUCKETS, series,
                  description="Scored texts by toxicity score (0.1-wide buckets)."),
        ctx.timeseries("toxicity_over_threshold", f"Rate over threshold ({thr})",
                       ctx.long_series(over, additive=False), unit="percent"),
        ctx.timeseries("toxicity_by_label", "Toxicity by label (average)", ctx.long_series(labels, additive=False),
                       unit="score"),
        table("toxicity_by_tenant", "Toxicity by tenant", [
            col("tenant"), col("target"), col("scored", unit="short"), col("avg_score", "average", "score"),
            col("over_threshold", f"over {thr}", "percent")], tenants, w=6),
    ])


def _factuality(ctx: Ctx, sc: str, r1: str) -> list[dict[str, Any]]:
    fact = "scorer = 'factuality'"
    avg = ctx.rows(f"SELECT {ctx.bucket('minute')} AS t, metric, avgMerge(value_avg) FROM gatewatch.scores_1m "
                   f"WHERE {r1} AND {fact} AND metric IN ('support', 'contradiction') GROUP BY t, metric ORDER BY t")
    labels = ctx.rows(f"SELECT {ctx.bucket('ts')} AS t, label, count() FROM gatewatch.scores FINAL WHERE {sc} "
                      f"AND {fact} AND metric IN ('support', 'contradiction') AND value IS NOT NULL "
                      "AND label IN ('unsupported', 'contradicted') GROUP BY t, label ORDER BY t")
    by_model = ctx.rows(
        "SELECT tenant, request_model AS model, avgIf(value, metric = 'support') AS s, "
        "countIf(metric = 'contradiction' AND label = 'contradicted') / greatest(countIf(metric = 'contradiction'), "
        f"1), countIf(metric = 'support' AND value IS NULL) FROM gatewatch.scores FINAL WHERE {sc} AND {fact} "
        "GROUP BY tenant, model ORDER BY s, tenant, model LIMIT 500")
    return section("Factuality", [
        ctx.timeseries("factuality", "Support and contradiction (average)", ctx.long_series(avg, additive=False),
                       unit="score", description="Mean entailment of the answer's sentences by the request's "
                       "context (support) and the highest contradiction probability; answers without context "
                       "are not applicable and skipped."),
        ctx.timeseries("factuality_labels", "Unsupported and contradicted answers",
                       ctx.long_series(labels, additive=True), style="stacked"),
        table("factuality_by_model", "Factuality by tenant and model", [
            col("tenant"), col("model"), col("support", unit="score"),
            col("contradicted_share", "contradicted", "percent"),
            col("not_applicable", "not applicable", "short")], by_model),
    ])


def _worst(ctx: Ctx, sc: str) -> list[dict[str, Any]]:
    def part(problem: str, cond: str, order: str) -> str:
        return (f"SELECT ts, tenant, request_model, target, value, event_id, '{problem}' AS problem "
                f"FROM gatewatch.scores FINAL WHERE {sc} AND {cond} ORDER BY value {order} LIMIT 50")

    union = " UNION ALL ".join([
        part("toxic", f"{TOX} AND value >= {{threshold:Float64}}", "DESC"),
        part("contradicted", "scorer = 'factuality' AND metric = 'contradiction' AND label = 'contradicted'", "DESC"),
        part("unsupported", "scorer = 'factuality' AND metric = 'support' AND label = 'unsupported'", "ASC")])
    rows = ctx.rows(
        "SELECT s.ts, s.problem, s.tenant, s.request_model, s.target, s.value, e.outcome, s.event_id, e.ts_start "
        f"FROM ({union}) AS s INNER JOIN (SELECT event_id, outcome, ts_start FROM gatewatch.events FINAL WHERE "
        f"{ctx.where('ts_start')}) AS e ON e.event_id = s.event_id "
        "ORDER BY s.problem, if(s.problem = 'unsupported', -s.value, s.value) DESC LIMIT 150")
    return section("Worst examples", [table("worst", "Worst examples (most toxic, most contradicted, least "
                                                     "supported)", [
        col("time", unit="time"), col("problem"), col("tenant"), col("model"), col("target"),
        col("score", unit="score"), col("outcome"), col("event_id", "audit entry", link="audit"),
        col("ts_start", hidden=True)], rows, description="Open an example to see its full audit entry.")])
