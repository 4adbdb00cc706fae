"""The aggregate panels the Grafana dashboards and the console views share, by the console's panel id.

Each is a ``Query`` over catalogue metrics; dashboards/grafana/build.py renders it with ``Grafana()``, the
console's views with their ``Console`` dialect. Titles, units and layout stay with each consumer (a
Grafana field override is not a console column). Row listings that are no aggregate of metrics (worst
examples, the alerts table, drift windows, the toxicity histogram's buckets) stay with their consumer too.
Time series put the bucket first (``time``) and name their series by the one string column after it.
"""

from __future__ import annotations

from schemas.metrics.catalogue import DRIFT, EVENTS, PII, ROLLUP, SCORES, SCORES_1M, TOX
from schemas.metrics.model import Query, col, m

UPSTREAM_1M = "if(deployment = '', '(none)', deployment) AS upstream"  # the rollup stores '' for none
UPSTREAM_EV = "ifNull(deployment, '(none)') AS upstream"
ERROR_TYPE = "ifNull(error_type, 'unknown') AS error_type"
RULE = "arrayJoin(if(empty(policy_rule_ids), ['(no rule)'], policy_rule_ids)) AS rule"
FAILED = "outcome = 'failed'"
DENY = "policy_decision = 'deny'"
FACTUALITY = "scorer = 'factuality'"
TODAY, MONTH = "ts_start >= toStartOfDay(now('UTC'))", "ts_start >= toStartOfMonth(now('UTC'))"


def _rate(by: str) -> Query:
    return Query(ROLLUP, (m("rps"),), by=(by,), bucket=True)


TRAFFIC = {
    "requests": Query(ROLLUP, (m("requests"),)),
    "error_rate": Query(ROLLUP, (m("error_rate"),)),
    "latency_p95": Query(EVENTS, (m("latency_p95_ms", "p95"),)),
    "ttft_p95": Query(EVENTS, (m("ttft_p95_ms", "p95"),)),
    "rps_by_tenant": _rate("tenant"),
    "rps_by_model": _rate("request_model"),
    "rps_by_upstream": _rate(UPSTREAM_1M),
    "outcomes": Query(ROLLUP, (m("completed"), m("errors", "failed"), m("denials", "denied")), bucket=True),
    "latency": Query(EVENTS, (m("latency_p50_ms", "p50"), m("latency_p95_ms", "p95"), m("latency_p99_ms", "p99")),
                     bucket=True),
    "ttft": Query(EVENTS, (m("ttft_p50_ms", "p50"), m("ttft_p95_ms", "p95"), m("ttft_p99_ms", "p99")), bucket=True),
    "latency_p99_by_upstream": Query(ROLLUP, (m("latency_p99_ms", "p99"),), by=(UPSTREAM_1M,), bucket=True),
    "errors_by_type": Query(EVENTS, (m("errors"),), by=(ERROR_TYPE,), bucket=True, where=FAILED),
    "errors_table": Query(EVENTS, (m("errors"), col("max(ts_start)", "last_seen")),
                          by=(ERROR_TYPE, UPSTREAM_EV, "tenant"), where=FAILED, order="errors DESC", limit=100),
    "breakdown": Query(ROLLUP, (m("requests"), m("errors"), m("error_rate"), m("denials"),
                                m("latency_p50_ms", "latency_p50"), m("latency_p99_ms", "latency_p99"),
                                m("ttft_p99_ms", "ttft_p99")),
                       by=("tenant", "request_model AS model", UPSTREAM_1M), order="requests DESC", limit=500),
}

USAGE = {
    "cost": Query(ROLLUP, (m("cost_usd"),)),
    "input_tokens": Query(ROLLUP, (m("input_tokens"),)),
    "output_tokens": Query(ROLLUP, (m("output_tokens"),)),
    "tokens_by_tenant": Query(ROLLUP, (m("tokens_per_min"),), by=("tenant",), bucket=True),
    "tokens_in_out": Query(ROLLUP, (m("input_tokens", "input"), m("output_tokens", "output")), bucket=True),
    "cost_by_model": Query(ROLLUP, (m("cost_usd"),), by=("request_model",), bucket=True),
    "cost_share": Query(ROLLUP, (m("cost_usd"),), by=("tenant",), order="cost_usd DESC, tenant"),
    # counted the way the gateway's key budgets count (UTC day, calendar month), whatever the time range
    "budgets": Query(EVENTS, (
        col(f"sumIf(ifNull(total_tokens, 0), {TODAY})", "tokens_today"),
        col(f"sumIf(ifNull(cost_usd, 0), {TODAY})", "cost_today"),
        col(f"sumIf(ifNull(total_tokens, 0), {MONTH})", "tokens_month"),
        col(f"sumIf(ifNull(cost_usd, 0), {MONTH})", "cost_month"),
        col("countIf(error_type IN ('budget_exceeded', 'rate_limit_exceeded'))", "limited_requests")),
        by=("tenant", "ifNull(key_id, '(none)') AS key_id"), timed=False,
        where="ts_start >= least(toStartOfMonth(now('UTC')), toStartOfDay(now('UTC')))",
        order="cost_month DESC", limit=500),
    "usage_table": Query(ROLLUP, (m("requests"), m("input_tokens"), m("output_tokens"), m("cost_usd"),
                                  m("cost_per_1k_requests")),
                         by=("tenant", "request_model AS model"), order="cost_usd DESC", limit=500),
}

GOVERNANCE = {
    "decisions": Query(EVENTS, (m("requests"),), by=("policy_decision",), bucket=True),
    "denials_by_rule": Query(EVENTS, (m("requests", "denials"),), by=(RULE,), where=DENY,
                             order="denials DESC, rule", limit=30),
    "denials_over_time": Query(EVENTS, (m("requests", "denials"),), by=(RULE,), bucket=True, where=DENY),
    "decisions_by_tenant": Query(EVENTS, (m("policy_denials", "denied"), m("policy_flags", "flagged"), m("requests"),
                                          m("denial_rate"), col("anyLast(policy_version)", "policy_version")),
                                 by=("tenant",), order="denied DESC, tenant", limit=500),
    "pii_over_time": Query(PII, (m("pii_detections", "detections"),), by=("entity",), bucket=True),
    "pii_by_entity": Query(PII, (m("pii_detections", "detections"),), by=("entity",), order="detections DESC, entity"),
    "redaction_volume": Query(EVENTS, (m("redacted_requests"), m("redacted_entities")), bucket=True),
    "redacted_share": Query(EVENTS, (m("redacted_share"),), by=("tenant",), bucket=True),
}

QUALITY = {
    "toxicity_over_threshold": Query(SCORES, (m("toxicity_over_threshold", "over_threshold"),), by=("target",),
                                     bucket=True),
    "toxicity_by_label": Query(SCORES_1M, (m("score_avg", "avg_score"),),
                               by=("concat(metric, ' / ', target) AS label",), bucket=True,
                               where="scorer = 'toxicity'"),
    "toxicity_by_tenant": Query(SCORES, (m("scored"), m("score_avg", "avg_score"),
                                         m("toxicity_over_threshold", "over_threshold")),
                                by=("tenant", "target"), where=TOX, order="over_threshold DESC, tenant, target",
                                limit=500),
    "factuality": Query(SCORES_1M, (m("score_avg", "value"),), by=("metric",), bucket=True,
                        where=f"{FACTUALITY} AND metric IN ('support', 'contradiction')"),
    "factuality_labels": Query(SCORES, (m("scored", "answers"),), by=("label",), bucket=True,
                               where=f"{FACTUALITY} AND metric IN ('support', 'contradiction') AND value IS NOT NULL "
                                     "AND label IN ('unsupported', 'contradicted')"),
    "factuality_by_model": Query(SCORES, (m("support_avg", "support"), m("contradiction_rate", "contradicted_share"),
                                          m("factuality_not_applicable", "not_applicable")),
                                 by=("tenant", "request_model AS model"), where=FACTUALITY,
                                 order="support, tenant, model", limit=500),
}

DRIFT_PANELS = {
    "drifted_windows": Query(DRIFT, (m("drifted_windows"),), by=("concat(tenant, ' / ', model) AS series",),
                             bucket=True, where="field = @field"),
    "centroid_distance": Query(SCORES_1M, (m("score_avg", "distance"),),
                               by=("concat(tenant, ' / ', request_model) AS series",), bucket=True,
                               where="scorer = 'drift' AND metric = 'centroid_distance' AND target = @field"),
}

PANELS: dict[str, Query] = {**TRAFFIC, **USAGE, **GOVERNANCE, **QUALITY, **DRIFT_PANELS}
