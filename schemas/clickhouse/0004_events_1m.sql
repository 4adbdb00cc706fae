-- Per-minute rollup of the audit log for dashboards.
-- NOT idempotent: a materialized view sees every insert before ReplacingMergeTree dedup, so a batch that
-- is redelivered after a crash between the sink write and the offset commit is counted twice here.
-- That only happens on crashes/rebalances; dashboards accept it. Exact figures: query `events FINAL`.
CREATE TABLE IF NOT EXISTS gatewatch.events_1m
(
    minute DateTime('UTC'),
    tenant LowCardinality(String),
    request_model LowCardinality(String),
    deployment LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    denials SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64),
    ttft_ms AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, minute, request_model, deployment)
TTL minute + toIntervalDay(365);

CREATE MATERIALIZED VIEW IF NOT EXISTS gatewatch.events_1m_mv TO gatewatch.events_1m AS
SELECT
    toStartOfMinute(ts_start) AS minute,
    tenant,
    ifNull(request_model, '') AS request_model,
    ifNull(deployment, '') AS deployment,
    toUInt64(count()) AS requests,
    toUInt64(countIf(outcome = 'failed')) AS errors,
    toUInt64(countIf(outcome = 'denied')) AS denials,
    toUInt64(sum(ifNull(input_tokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(output_tokens, 0))) AS output_tokens,
    toFloat64(sum(ifNull(cost_usd, 0))) AS cost_usd,
    quantilesTDigestState(0.5, 0.9, 0.99)(latency_ms) AS latency_ms,
    quantilesTDigestState(0.5, 0.9, 0.99)(ttft_ms) AS ttft_ms
FROM gatewatch.events
GROUP BY minute, tenant, request_model, deployment;
