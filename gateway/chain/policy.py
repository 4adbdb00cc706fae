"""Policy stage (after parse): the tenant's policy for this request, and its checks (models, required
metadata, max_tokens, prompt size, input patterns, prompt injection: ``gateway.governance.checks``).

It puts the policy on the Exchange (``scratch["policy"]``, ``policy_version``) for the stages after it;
rate limits and budgets are the next stage's (``gateway.chain.limits``), so a request a check refuses
never takes from a limit. Every decision carries rule ids, a reason and the policy version; any internal
error refuses the request (503, fail closed), and so does a tenant whose policy file was rejected with
no earlier good version (503 ``policy_unavailable``, rule ``policy.rejected``).
"""

from __future__ import annotations

from typing import Protocol

from gateway.chain.base import Next
from gateway.errors import GatewayError, PolicyUnavailable, ServiceUnavailable
from gateway.exchange import Exchange, Reply
from gateway.governance.checks import run_checks
from gateway.governance.decision import count_denied, deny, evaluation_failed, flag
from gateway.governance.loader import PolicySet

__all__ = ["PolicySource", "PolicyStage", "deny", "flag"]  # deny/flag: the redaction stage's too


class PolicySource(Protocol):
    """Where the stage reads the policies in effect: ``PolicyStore`` (hot-reloaded), a fixed set in tests."""

    @property
    def current(self) -> PolicySet | None: ...


class PolicyStage:
    name = "policy"

    def __init__(self, policies: PolicySource) -> None:
        self.policies = policies

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        current = self.policies.current
        if current is None:
            raise ServiceUnavailable("The governance policy is not loaded; the request was refused.",
                                     code="policy_unavailable")
        try:
            pol = current.for_tenant(ex.tenant)
        except PolicyUnavailable as exc:  # its file was rejected and it has no earlier good policy
            count_denied()
            raise deny(ex, exc, ["policy.rejected"]) from None
        ex.scratch["policy"] = pol
        ex.policy_version = pol.version
        try:
            run_checks(ex, pol)
        except GatewayError:
            count_denied()
            raise
        except Exception as exc:
            raise evaluation_failed(ex) from exc
        return await call_next(ex)
