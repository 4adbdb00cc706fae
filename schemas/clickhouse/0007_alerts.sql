-- Alerts raised by the worker's alert evaluator (consumers/alerts): one row per alert, latest state wins.
-- An alert is one firing episode of a rule for one group (alert_id = hash of rule, group, started_at);
-- the evaluator inserts a row when it fires and another when it resolves, each with a larger updated_at,
-- so `SELECT ... FINAL` shows the current state of every alert (state firing = still firing).
CREATE TABLE IF NOT EXISTS gatewatch.alerts
(
    alert_id String,
    rule_id LowCardinality(String),
    metric LowCardinality(String),
    group_key String,                        -- 'tenant=acme,model=gpt-4o-mini' ('' = no grouping)
    group_labels Map(String, String),
    state LowCardinality(String),            -- firing | resolved
    value Nullable(Float64),                 -- at the transition (NULL: the group had no data)
    op LowCardinality(String),
    threshold Float64,
    severity LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    notified_at Nullable(DateTime64(3, 'UTC')),  -- when a webhook accepted this state's notification
    labels Map(String, String),
    summary String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (rule_id, alert_id)
TTL toDateTime(started_at) + toIntervalDay(365);
