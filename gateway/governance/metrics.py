"""Governance metrics (default registry, few labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POLICY_RELOADS = Counter("gatewatch_policy_reloads_total", "Policy directory loads that took effect")
POLICY_RELOAD_FAILURES = Counter("gatewatch_policy_reload_failures_total",
                                 "Policy reloads that rejected at least one file (gatewatch_policy_rejected_files)")
POLICY_DECISIONS = Counter("gatewatch_policy_decisions_total", "Policy decisions", ["decision"])
PII_ENTITIES = Counter("gatewatch_pii_entities_total", "PII entities acted on", ["entity", "where"])
LIMITED = Counter("gatewatch_limited_total", "Requests refused by a rate limit or budget", ["kind"])
POLICY_REJECTED_FILES = Gauge("gatewatch_policy_rejected_files",
                              "Policy files rejected by the latest reload (each tenant keeps its last good "
                              "policy or is refused); 0 when every file is in effect")
