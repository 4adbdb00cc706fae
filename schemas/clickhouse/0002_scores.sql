-- One row per (event, scorer, metric, target). value NULL = not applicable (label says why).
-- ReplacingMergeTree(scored_at): a rescored or redelivered event keeps its latest score.
CREATE TABLE IF NOT EXISTS gatewatch.scores
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_model LowCardinality(String),
    scorer LowCardinality(String),
    metric LowCardinality(String),
    target LowCardinality(String),
    value Nullable(Float64),
    label String,
    backend LowCardinality(String),
    model String,
    model_version String,
    scored_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(scored_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, event_id, scorer, metric, target)
TTL toDateTime(ts) + toIntervalDay(365);
