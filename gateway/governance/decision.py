"""How a governance stage records its decision on the Exchange (what the event stores) and in metrics.

Every refusal goes through ``deny`` so the event always names the rules and the reason; ``flag`` keeps a
deny once made. The decision is counted once per request in ``gatewatch_policy_decisions_total``: the
policy and limits stages count each refusal they raise, and the limits stage, the last admission check
before the upstream, counts the decision of every admitted request (``count_admitted``).
"""

from __future__ import annotations

import logging

from gateway.errors import GatewayError, ServiceUnavailable
from gateway.exchange import Exchange
from gateway.governance.metrics import POLICY_DECISIONS
from gateway.metrics import child

log = logging.getLogger(__name__)


def deny(ex: Exchange, err: GatewayError, rule_ids: list[str], reason: str | None = None) -> GatewayError:
    """Mark the exchange refused by ``rule_ids`` and return ``err`` for the caller to raise."""
    ex.policy_decision = "deny"
    ex.policy_rule_ids.extend(r for r in rule_ids if r not in ex.policy_rule_ids)
    ex.policy_reason = reason or err.message
    return err


def flag(ex: Exchange, rule_ids: list[str]) -> None:
    """Record rules that matched without refusing; a request already denied stays denied."""
    if ex.policy_decision == "allow":
        ex.policy_decision = "flag"
    ex.policy_rule_ids.extend(r for r in rule_ids if r not in ex.policy_rule_ids)


def count_denied() -> None:
    child(POLICY_DECISIONS, "deny").inc()


def count_admitted(ex: Exchange) -> None:
    child(POLICY_DECISIONS, ex.policy_decision).inc()


def evaluation_failed(ex: Exchange) -> GatewayError:
    """The 503 for a policy or limit evaluation that raised something unexpected: fail closed. Call it
    from the ``except`` block (the traceback is logged, never the request)."""
    log.exception("policy evaluation failed (request refused)")
    return deny(ex, ServiceUnavailable("The gateway could not evaluate its policy for this request; it was "
                                       "refused.", code="policy_error"), ["policy.error"])
