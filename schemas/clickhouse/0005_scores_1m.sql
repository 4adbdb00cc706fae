-- Per-minute averages of every scorer metric (NULL values = not applicable are skipped by avg).
-- Same caveat as events_1m: a redelivered batch is counted twice; exact figures come from `scores FINAL`.
CREATE TABLE IF NOT EXISTS gatewatch.scores_1m
(
    minute DateTime('UTC'),
    tenant LowCardinality(String),
    request_model LowCardinality(String),
    scorer LowCardinality(String),
    metric LowCardinality(String),
    target LowCardinality(String),
    value_avg AggregateFunction(avg, Nullable(Float64)),
    value_max SimpleAggregateFunction(max, Nullable(Float64)),
    scored SimpleAggregateFunction(sum, UInt64),
    not_applicable SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, minute, request_model, scorer, metric, target)
TTL minute + toIntervalDay(365);

CREATE MATERIALIZED VIEW IF NOT EXISTS gatewatch.scores_1m_mv TO gatewatch.scores_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    tenant,
    request_model,
    scorer,
    metric,
    target,
    avgState(value) AS value_avg,
    max(value) AS value_max,
    toUInt64(count()) AS scored,
    toUInt64(countIf(value IS NULL)) AS not_applicable
FROM gatewatch.scores
GROUP BY minute, tenant, request_model, scorer, metric, target;
