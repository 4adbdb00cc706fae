"""Governance: tenant policies (declarative, versioned, hot-reloaded), rate limits, budgets, prompt-injection
rules and the glue between policies and the PII redaction library. The chain stages live in
``gateway.chain.policy`` and ``gateway.chain.redaction``; see docs/governance.md."""
