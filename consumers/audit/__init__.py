"""Compliance audit: filters over ``events FINAL`` scoped to a token's tenants, exports (JSONL, CSV,
Parquet), read-only SQL, the log of audit queries, and tamper evidence (content hashes and per-instance
sequence numbers). The HTTP side lives in ``consumers.console``; the CLI side in ``consumers.audit.client``.
"""
