"""Governance: tenant policies (declarative, versioned, hot-reloaded), their checks, rate limits, budgets,
prompt-injection rules and the glue between policies and the PII redaction library. The chain stages live
in ``gateway.chain.policy``, ``gateway.chain.limits`` and ``gateway.chain.redaction``; see docs/governance.md."""
