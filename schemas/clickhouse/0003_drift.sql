-- Embedding drift per window: one row per (tenant, model, field, metric, window).
CREATE TABLE IF NOT EXISTS gatewatch.drift
(
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    model LowCardinality(String),
    field LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    baseline_size UInt32,
    window_size UInt32,
    drifted UInt8,
    backend LowCardinality(String),
    embed_model String,
    computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant, model, field, metric, window_start)
TTL toDateTime(window_start) + toIntervalDay(365);
