"""Every metric the Grafana dashboards, the console and the alert rules show, each defined once.

Decisions where the three places used to differ (tests/dashboards/test_metric_agreement.py holds them to it):

- **error rate** = exchanges with ``outcome = 'failed'`` (upstream errors, timeouts, stream errors, budget and
  rate-limit refusals: the gateway's ``status >= 400`` or ``error_type``) over **all** exchanges, denials
  included (a policy or auth denial is the gateway doing its job, not an error, but it is traffic).
  NULL when there is no traffic: "no data" is not "0 % errors" (Grafana used to show 0, and an alert
  must not resolve on an empty window).
- **TTFT** counts **streamed** exchanges only: a non-streamed answer records its time to the response
  headers, which is the whole generation and would drag every TTFT percentile towards full latency
  (the alert's p99 used to mix them in). The ``events_1m`` rollup has no stream column, so its t-digest
  covers every exchange with a first byte (``approx``).
- **contradiction rate** = answers labelled ``contradicted`` over answers whose contradiction was
  measured (``value IS NOT NULL``); answers without context are not applicable and not in the
  denominator (the Grafana table used to count them). Same for the unsupported rate.
- counts and sums read the same from ``events FINAL`` (exact; alerts) and the ``events_1m`` rollup (cheap
  at any range; dashboards), which the rollup's materialized view guarantees, except after a redelivered
  batch (the rollup counts it twice).
"""

from __future__ import annotations

from schemas.metrics.model import Metric, Source

EVENTS, ROLLUP, PII, SCORES, SCORES_1M, SCORED_EVENTS, DRIFT = (
    "events", "events_1m", "pii", "scores", "scores_1m", "scored_events", "drift")
_EV_MODEL = "ifNull(request_model, '')"

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(EVENTS, "gatewatch.events FINAL", "ts_start", _EV_MODEL),
    Source(ROLLUP, "gatewatch.events_1m", "minute", "request_model", rollup=True),
    Source(PII, "gatewatch.events FINAL ARRAY JOIN mapKeys(pii_counts) AS entity, mapValues(pii_counts) AS n",
           "ts_start", _EV_MODEL),
    Source(SCORES, "gatewatch.scores FINAL", "ts", "request_model"),
    Source(SCORES_1M, "gatewatch.scores_1m", "minute", "request_model", rollup=True),
    # one row per scored event: toxic when any toxicity metric (on any target) was labelled toxic
    Source(SCORED_EVENTS, "(SELECT tenant, request_model, event_id, max(ts) AS last_ts, max(label = 'toxic') AS "
           "toxic FROM gatewatch.scores FINAL WHERE scorer = 'toxicity' AND value IS NOT NULL AND @range(ts) "
           "GROUP BY tenant, request_model, event_id)", "last_ts", "request_model"),
    Source(DRIFT, "gatewatch.drift FINAL", "window_end", "model"),
)}

STREAM_TTFT = "stream AND ttft_ms IS NOT NULL"
TOX = "scorer = 'toxicity' AND metric = 'toxicity' AND value IS NOT NULL"
CONTRADICTION = "scorer = 'factuality' AND metric = 'contradiction' AND value IS NOT NULL"
SUPPORT = "scorer = 'factuality' AND metric = 'support' AND value IS NOT NULL"
PII_BLOCK = "arrayExists(r -> startsWith(r, 'pii.') AND position(r, '.block.') > 0, policy_rule_ids)"
_TDIGEST = "t-digest from the per-minute rollup (approximate)"


def _share(cond: str, label: str) -> str:
    return f"if(countIf({cond}) = 0, NULL, countIf({cond} AND label = '{label}') / countIf({cond}))"


def _latency(q: str, k: int | None) -> Metric:
    rollup = {ROLLUP: f"quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms)[{k}]"} if k else {}
    return Metric(f"latency_p{round(float(q) * 100)}_ms", f"{q} quantile of the request duration to the last byte",
                  "ms", {EVENTS: f"quantile({q})(latency_ms)", **rollup}, approx=dict.fromkeys(rollup, _TDIGEST))


def _ttft(q: str, k: int | None) -> Metric:
    rollup = {ROLLUP: f"quantilesTDigestMerge(0.5, 0.9, 0.99)(ttft_ms)[{k}]"} if k else {}
    return Metric(f"ttft_p{round(float(q) * 100)}_ms", f"{q} quantile of the time to first token of streamed "
                  "exchanges", "ms", {EVENTS: f"quantileIf({q})(ttft_ms, {STREAM_TTFT})", **rollup},
                  where={EVENTS: STREAM_TTFT},
                  approx=dict.fromkeys(rollup, f"{_TDIGEST}, over every exchange with a first byte (no stream "
                                                "column in the rollup)"))


_TRAFFIC = [
    Metric("requests", "exchanges (every outcome)", "count", {EVENTS: "count()", ROLLUP: "sum(requests)"}),
    Metric("errors", "failed exchanges (outcome = failed)", "count",
           {EVENTS: "countIf(outcome = 'failed')", ROLLUP: "sum(errors)"}),
    Metric("denials", "exchanges the gateway refused (outcome = denied: policy, auth)", "count",
           {EVENTS: "countIf(outcome = 'denied')", ROLLUP: "sum(denials)"}),
    Metric("completed", "exchanges that neither failed nor were denied", "count", "{requests} - {errors} - {denials}"),
    Metric("error_rate", "failed exchanges over all exchanges; NULL without traffic", "ratio",
           "if({requests} = 0, NULL, {errors} / {requests})"),
    Metric("rps", "exchanges per second over the bucket", "per_s", "{requests} / @step"),
    _latency("0.5", 1), _latency("0.95", None), _latency("0.99", 3),
    _ttft("0.5", None), _ttft("0.95", None), _ttft("0.99", 3),
]

_USAGE = [
    Metric("input_tokens", "prompt tokens", "count",
           {EVENTS: "sum(ifNull(input_tokens, 0))", ROLLUP: "sum(input_tokens)"}),
    Metric("output_tokens", "completion tokens", "count",
           {EVENTS: "sum(ifNull(output_tokens, 0))", ROLLUP: "sum(output_tokens)"}),
    Metric("total_tokens", "tokens as the gateway's token budgets count them", "count",
           {EVENTS: "sum(ifNull(total_tokens, 0))"}),
    Metric("tokens_per_min", "input plus output tokens per minute over the bucket", "per_min",
           "({input_tokens} + {output_tokens}) * 60 / @step"),
    Metric("cost_usd", "cost in USD", "usd", {EVENTS: "sum(ifNull(cost_usd, 0))", ROLLUP: "sum(cost_usd)"}),
    Metric("cost_per_1k_requests", "cost per 1,000 exchanges; NULL without traffic", "usd",
           "if({requests} = 0, NULL, {cost_usd} / {requests} * 1000)"),
]

_GOVERNANCE = [
    Metric("policy_denials", "exchanges the policy denied", "count", {EVENTS: "countIf(policy_decision = 'deny')"}),
    Metric("policy_flags", "exchanges the policy flagged", "count", {EVENTS: "countIf(policy_decision = 'flag')"}),
    Metric("denial_rate", "policy denials over all exchanges", "ratio",
           "if({requests} = 0, NULL, {policy_denials} / {requests})"),
    Metric("pii_detections", "PII entities replaced (per entity type with the pii source)", "count", {PII: "sum(n)"}),
    Metric("redacted_requests", "exchanges whose prompt or answer had PII replaced", "count",
           {EVENTS: "countIf(notEmpty(pii_counts))"}),
    Metric("redacted_entities", "PII entities replaced", "count", {EVENTS: "sum(arraySum(mapValues(pii_counts)))"}),
    Metric("redacted_share", "exchanges with PII replaced over all exchanges", "ratio",
           "if({requests} = 0, NULL, {redacted_requests} / {requests})"),
    Metric("pii_blocks", "exchanges refused by a PII block rule (pii.*.block.*)", "count",
           {EVENTS: f"countIf({PII_BLOCK})"}),
    Metric("pii_block_rate", "exchanges refused by a PII block rule over all exchanges", "ratio",
           "if({requests} = 0, NULL, {pii_blocks} / {requests})"),
]

_QUALITY = [
    Metric("scored", "scorer rows", "count", {SCORES: "count()", SCORES_1M: "sum(scored)"}),
    Metric("score_avg", "average score (not-applicable rows skipped)", "score",
           {SCORES: "avg(value)", SCORES_1M: "avgMerge(value_avg)"}),
    Metric("toxicity_over_threshold", "toxicity scores at or over the threshold, over toxicity scores", "ratio",
           {SCORES: f"avgIf(value >= @threshold, {TOX})"}, where={SCORES: TOX}),
    Metric("toxicity_rate", "scored events with any toxicity metric labelled toxic, over scored events", "ratio",
           {SCORED_EVENTS: "if(count() = 0, NULL, avg(toxic))"}),
    Metric("contradiction_rate", "answers labelled contradicted over answers whose contradiction was measured",
           "ratio", {SCORES: _share(CONTRADICTION, "contradicted")}, where={SCORES: CONTRADICTION}),
    Metric("unsupported_rate", "answers labelled unsupported over answers whose support was measured", "ratio",
           {SCORES: _share(SUPPORT, "unsupported")}, where={SCORES: SUPPORT}),
    Metric("support_avg", "mean entailment of the answers by their context", "score",
           {SCORES: "avgIf(value, scorer = 'factuality' AND metric = 'support')"},
           where={SCORES: "scorer = 'factuality' AND metric = 'support'"}),
    Metric("factuality_not_applicable", "answers without context (factuality not applicable)", "count",
           {SCORES: "countIf(scorer = 'factuality' AND metric = 'support' AND value IS NULL)"}),
    Metric("drift_flag", "1 when any drift window of the group closed in the range drifted, else 0", "count",
           {DRIFT: "if(count() = 0, NULL, max(drifted))"}),
    Metric("drifted_windows", "drift windows flagged as drifted (one row per window: the p-value's)", "count",
           {DRIFT: "countIf(metric = 'mmd2_pvalue' AND drifted = 1)"}, where={DRIFT: "metric = 'mmd2_pvalue'"}),
]

METRICS: dict[str, Metric] = {mt.name: mt for mt in (*_TRAFFIC, *_USAGE, *_GOVERNANCE, *_QUALITY)}
