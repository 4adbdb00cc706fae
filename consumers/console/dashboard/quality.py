"""Quality & safety: toxicity distribution and rate over a threshold, factuality support/contradiction, and the
worst examples with their audit entry (``event_id``, ``tenant``, ``ts_start``: the page opens it in the
audit browser).

Aggregates are panels of the metrics catalogue, shared with the Grafana board (``quality``): ``scores FINAL``
and the ``scores_1m`` rollup. The histogram's buckets and the worst examples are this page's own.
"""

from __future__ import annotations

from typing import Any

from consumers.console.dashboard.frame import Ctx, col, histogram, section, stat, table
from schemas.metrics import Query, m
from schemas.metrics.catalogue import TOX

BUCKETS = [f"{i / 10:.1f}" for i in range(10)]


def build(ctx: Ctx) -> list[dict[str, Any]]:
    return [*_stats(ctx), *_toxicity(ctx), *_factuality(ctx), *_worst(ctx, ctx.where("ts", "request_model"))]


def _stats(ctx: Ctx) -> list[dict[str, Any]]:
    toxic = dict(ctx.panel(Query("scores", (m("toxicity_over_threshold"),), by=("target",))))  # target -> share
    contra, unsup = ctx.one_of(Query("scores", (m("contradiction_rate"), m("unsupported_rate"))))
    thr = f"{ctx.window.threshold:g}"
    return [stat("toxic_prompts", f"Toxic prompts (≥ {thr})", toxic.get("prompt"), "percent"),
            stat("toxic_responses", f"Toxic answers (≥ {thr})", toxic.get("response"), "percent"),
            stat("contradicted", "Contradicted answers", contra, "percent",
                 description="Share of answers with context whose worst sentence contradicts it."),
            stat("unsupported", "Unsupported answers", unsup, "percent",
                 description="Share of answers with context that the context does not support.")]


def _distribution(ctx: Ctx) -> list[dict[str, Any]]:
    """Counts per 0.1-wide bucket (a score of 1.0 goes into the last one), prompt and response."""
    where = f"{ctx.where('ts', 'request_model')} AND {TOX}"
    dist = ctx.rows("SELECT least(toUInt8(floor(value * 10)), 9) AS b, countIf(target = 'prompt'), "
                    f"countIf(target = 'response') FROM gatewatch.scores FINAL WHERE {where} GROUP BY b")
    counts = {int(b): (p, r) for b, p, r in dist}
    return [{"name": name, "values": [counts.get(i, (0, 0))[k] for i in range(10)]}
            for k, name in enumerate(("prompt", "response"))]


def _toxicity(ctx: Ctx) -> list[dict[str, Any]]:
    thr = f"{ctx.window.threshold:g}"
    return section("Toxicity", [
        histogram("toxicity_distribution", "Toxicity distribution", BUCKETS, _distribution(ctx),
                  description="Scored texts by toxicity score (0.1-wide buckets)."),
        ctx.timeseries("toxicity_over_threshold", f"Rate over threshold ({thr})",
                       ctx.long_series(ctx.panel("toxicity_over_threshold"), additive=False), unit="percent"),
        ctx.timeseries("toxicity_by_label", "Toxicity by label (average)",
                       ctx.long_series(ctx.panel("toxicity_by_label"), additive=False), unit="score"),
        table("toxicity_by_tenant", "Toxicity by tenant", [
            col("tenant"), col("target"), col("scored", unit="short"), col("avg_score", "average", "score"),
            col("over_threshold", f"over {thr}", "percent")], ctx.panel("toxicity_by_tenant"), w=6),
    ])


def _factuality(ctx: Ctx) -> list[dict[str, Any]]:
    return section("Factuality", [
        ctx.timeseries("factuality", "Support and contradiction (average)",
                       ctx.long_series(ctx.panel("factuality"), additive=False), unit="score",
                       description="Mean entailment of the answer's sentences by the request's context (support) "
                       "and the highest contradiction probability; answers without context are not applicable "
                       "and skipped."),
        ctx.timeseries("factuality_labels", "Unsupported and contradicted answers",
                       ctx.long_series(ctx.panel("factuality_labels"), additive=True), style="stacked"),
        table("factuality_by_model", "Factuality by tenant and model", [
            col("tenant"), col("model"), col("support", unit="score"),
            col("contradicted_share", "contradicted", "percent"),
            col("not_applicable", "not applicable", "short")], ctx.panel("factuality_by_model")),
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
