-- The audit log: one row per exchange (every field of schemas.events.Event v1).
-- Dedup: ReplacingMergeTree(ingested_at). Every column of the sorting key and of the partition key is
-- fixed per event (tenant, ts_start, event_id), so a redelivered event always lands in the same partition
-- with the same key and collapses to one row on merge, and `SELECT ... FINAL` never shows duplicates.
-- Retention: 365 days by default; the worker changes it (worker.events_retention_days) with
--   ALTER TABLE gatewatch.events MODIFY TTL toDateTime(ts_start) + toIntervalDay(<days>)
CREATE TABLE IF NOT EXISTS gatewatch.events
(
    event_id String,
    schema_version UInt8,
    request_id String,
    gateway_instance LowCardinality(String),
    sequence UInt64,
    ts_start DateTime64(3, 'UTC'),
    ts_first_token Nullable(DateTime64(3, 'UTC')),
    ts_end DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    key_id Nullable(String),
    end_user Nullable(String),
    metadata Map(String, String),
    endpoint LowCardinality(String),
    operation LowCardinality(String),
    request_model LowCardinality(Nullable(String)),
    response_model LowCardinality(Nullable(String)),
    deployment LowCardinality(Nullable(String)),
    provider LowCardinality(Nullable(String)),
    response_id Nullable(String),
    stream Bool,
    attempts UInt32,
    status UInt16,
    outcome LowCardinality(String),
    error_type LowCardinality(Nullable(String)),
    error_message Nullable(String),
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    input_tokens Nullable(UInt32),
    output_tokens Nullable(UInt32),
    total_tokens Nullable(UInt32),
    cost_usd Nullable(Float64),
    capture LowCardinality(String),
    request_messages Array(Tuple(role String, content Nullable(String), content_sha256 Nullable(String), name Nullable(String))),
    request_context Array(Tuple(role String, content Nullable(String), content_sha256 Nullable(String), name Nullable(String))),
    request_params String, -- JSON text (exact round trip; query with JSONExtract*)
    response_text Nullable(String),
    response_text_sha256 Nullable(String),
    finish_reasons Array(LowCardinality(String)),
    policy_decision LowCardinality(String),
    policy_rule_ids Array(LowCardinality(String)),
    policy_reason Nullable(String),
    policy_version LowCardinality(Nullable(String)),
    pii_counts Map(LowCardinality(String), UInt32),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_request_id request_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts_start)
ORDER BY (tenant, toDate(ts_start), event_id)
TTL toDateTime(ts_start) + toIntervalDay(365);
