-- Drift baselines (consumers/scorers/drift.py, drift_store.py): one row per baseline, written through the
-- drift pipeline's sink when a baseline completes (so only after that batch is written is its offset
-- committed), read when the scorer first sees a (tenant, model, field) after a start. A restarted worker,
-- its scorer child process, or another consumer-group member taking over a partition thus keeps comparing
-- against the same baseline instead of collecting a new one from traffic that may have drifted already.
--
-- identity: a hash of what makes two baselines comparable: embedding model name and a fingerprint of its
-- files, embedding dimension, max_length, and the baseline's definition (baseline_events or the pinned
-- range, max_baseline); `config` holds the same as JSON. A changed identity starts a new baseline; rows of
-- other identities stay (configuring the earlier setup again resumes its baseline).
-- The current baseline of a key: its newest (created_at) row with state 'active' under FINAL.
--
-- Reset (what `gatewatch drift reset --tenant T [--model M] [--field F]` and POST /api/drift/reset do):
-- insert each active row again with state 'reset', empty arrays and a larger updated_at; running scorers
-- drop it within drift.baseline_refresh and collect a new baseline. By hand:
--   INSERT INTO gatewatch.drift_baselines (tenant, model, field, identity, baseline_id, state, embed_model,
--       embed_version, config, baseline_size, dim, collected_from, collected_to, created_at, updated_at)
--   SELECT tenant, model, field, identity, baseline_id, 'reset', embed_model, embed_version, config,
--       baseline_size, dim, collected_from, collected_to, created_at, now64(3)
--   FROM gatewatch.drift_baselines FINAL WHERE state = 'active' AND tenant = 'T' [AND model = 'M'];
CREATE TABLE IF NOT EXISTS gatewatch.drift_baselines
(
    tenant LowCardinality(String),
    model LowCardinality(String),          -- request model ('' if none)
    field LowCardinality(String),          -- prompt | response
    identity String,
    baseline_id String,
    state LowCardinality(String),          -- active | reset
    embed_model String,
    embed_version String,                  -- fingerprint of the embedding model's files
    config String,                         -- JSON: what `identity` hashes
    baseline_size UInt32,                  -- events in the baseline (its centroid's)
    dim UInt16,
    sample_size UInt32,                    -- rows of `sample` (<= drift.max_baseline; 0 once reset)
    centroid Array(Float32),               -- unit vector (dim)
    sample Array(Float32),                 -- sample_size x dim, row-major: the MMD² reference sample
    collected_from DateTime64(3, 'UTC'),   -- ts_end of the baseline's first and last event
    collected_to DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant, model, field, identity, baseline_id);
