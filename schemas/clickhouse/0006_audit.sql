-- Compliance audit.
-- 1. Tamper evidence: the archiver stores a content hash per event (consumers.audit.integrity.content_hash,
--    'v1:<sha256>' over the canonical event). Rows written before this migration have '' (unhashed).
ALTER TABLE gatewatch.events ADD COLUMN IF NOT EXISTS content_hash String DEFAULT '';

-- 2. The audit of audits: one row per /api/audit, /api/audit/verify and /api/query call (allowed or not).
CREATE TABLE IF NOT EXISTS gatewatch.audit_queries
(
    query_id String,
    ts DateTime64(3, 'UTC') DEFAULT now64(3),
    token_id String,
    scope Array(String),               -- the token's tenants; ['*'] for an admin token
    endpoint LowCardinality(String),   -- audit | audit.verify | query
    filter String,                     -- JSON: the filter parameters, or {"sql": ...}
    rows UInt64,
    status UInt16,
    error Nullable(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, query_id);
