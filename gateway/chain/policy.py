"""Policy stage (after parse): models, prompt size, max_tokens, required metadata, input patterns,
prompt injection, rate limits and budgets. Every decision carries rule ids, a reason and the policy
version; any internal error refuses the request (503, fail closed), and so does a tenant whose policy
file was rejected with no earlier good version (503 ``policy_unavailable``, rule ``policy.rejected``).
Usage is recorded after the answer (when a stream ends) for budgets and tokens/min."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from gateway.auth.keys import KeyRecord, KeyStore
from gateway.chain.base import Exchange, Next, Reply, SSEEvent
from gateway.chain.emit import cost_of
from gateway.config import Price
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    PolicyDenied,
    PolicyUnavailable,
    RateLimited,
    ServiceUnavailable,
)
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.limiter import LimiterStore
from gateway.governance.metrics import LIMITED, POLICY_DECISIONS
from gateway.governance.policy import Budgets, RateLimits
from gateway.governance.store import PolicyStore
from gateway.governance.texts import request_texts
from gateway.governance.usage import UsageTracker, periods, seconds_to_reset
from gateway.metrics import child

log = logging.getLogger(__name__)

_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_USER_FIELDS = ("end_user", "user")


def deny(ex: Exchange, err: GatewayError, rule_ids: list[str], reason: str | None = None) -> GatewayError:
    ex.policy_decision = "deny"
    ex.policy_rule_ids.extend(r for r in rule_ids if r not in ex.policy_rule_ids)
    ex.policy_reason = reason or err.message
    return err


def flag(ex: Exchange, rule_ids: list[str]) -> None:
    if ex.policy_decision == "allow":
        ex.policy_decision = "flag"
    ex.policy_rule_ids.extend(r for r in rule_ids if r not in ex.policy_rule_ids)


class PolicyStage:
    name = "policy"

    def __init__(self, policies: PolicyStore, keys: KeyStore, limiter: LimiterStore, usage: UsageTracker,
                 price_for: Callable[[str | None], Price | None]) -> None:
        self.policies = policies
        self.keys = keys
        self.limiter = limiter
        self.usage = usage
        self.price_for = price_for

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        current = self.policies.current
        if current is None:
            raise ServiceUnavailable("The governance policy is not loaded; the request was refused.",
                                     code="policy_unavailable")
        try:
            pol = current.for_tenant(ex.tenant)
        except PolicyUnavailable as exc:  # its file was rejected and it has no earlier good policy
            POLICY_DECISIONS.labels("deny").inc()
            raise deny(ex, exc, ["policy.rejected"]) from None
        ex.scratch["policy"] = pol
        ex.policy_version = pol.version
        key = self.keys.by_id(ex.key_id)
        try:
            self.check(ex, pol)
            await self.check_limits(ex, pol, key)
        except GatewayError:
            POLICY_DECISIONS.labels("deny").inc()
            raise
        except Exception as exc:
            log.exception("policy evaluation failed (request refused)")
            raise deny(ex, ServiceUnavailable("The gateway could not evaluate its policy for this request; "
                                              "it was refused.", code="policy_error"),
                       ["policy.error"]) from exc
        child(POLICY_DECISIONS, ex.policy_decision).inc()
        reply = await call_next(ex)
        if reply.chunks is None:  # usage is accounted once the answer is written
            reply.after.append(functools.partial(self.record, ex, pol, key))
        else:
            reply.chunks = self._record_after(ex, pol, key, reply.chunks)
        return reply

    # ---- static checks ------------------------------------------------------------------------
    def check(self, ex: Exchange, pol: CompiledPolicy) -> None:
        p = pol.policy
        model = ex.request_model or ""
        rule = pol.model_allowed(model)
        if rule is not None:
            raise deny(ex, PolicyDenied(f"The model '{model}' is not allowed by this tenant's policy ({rule}).",
                                        param="model", code="model_not_allowed"), [rule])
        missing = [n for n in p.required_metadata
                   if not (ex.end_user if n in _USER_FIELDS else ex.metadata.get(n))]
        if missing:
            raise deny(ex, InvalidRequest(
                f"This tenant's policy requires request metadata that is missing: {', '.join(missing)}. Send it "
                "as extra_body={'gatewatch': {'metadata': {...}}} or x-gatewatch-meta-<name> headers "
                "(end_user: the 'user' field).", param="gatewatch.metadata", code="missing_metadata"),
                ["required_metadata"])
        if p.limits.max_tokens is not None:
            for f in _MAX_TOKEN_FIELDS:
                v = ex.body.get(f)
                if isinstance(v, int) and v > p.limits.max_tokens:
                    raise deny(ex, InvalidRequest(f"'{f}' is {v}; this tenant's policy allows at most "
                                                  f"{p.limits.max_tokens}.", param=f, code="max_tokens_exceeded"),
                               ["limits.max_tokens"])
        lim = p.limits
        if not (lim.max_prompt_chars or lim.max_prompt_tokens or pol.input_patterns or pol.injection):
            return
        refs = request_texts(ex.endpoint, ex.body)
        texts = [r.text for r in refs]
        chars = sum(len(t) for t in texts)
        if lim.max_prompt_chars is not None and chars > lim.max_prompt_chars:
            raise deny(ex, InvalidRequest(f"The prompt has {chars} characters; this tenant's policy allows at most "
                                          f"{lim.max_prompt_chars}.", code="prompt_too_large"),
                       ["limits.max_prompt_chars"])
        if lim.max_prompt_tokens is not None and math.ceil(chars / 4) > lim.max_prompt_tokens:
            raise deny(ex, InvalidRequest(f"The prompt has about {math.ceil(chars / 4)} tokens (estimated as "
                                          f"characters / 4); this tenant's policy allows at most "
                                          f"{lim.max_prompt_tokens}.", code="prompt_too_large"),
                       ["limits.max_prompt_tokens"])
        for r in pol.input_patterns.scan(texts):
            if r.action == "block":
                raise deny(ex, PolicyDenied(r.reason or f"The request matches a pattern this tenant's policy "
                                            f"blocks (rule {r.id}).", code="pattern_blocked"), [r.id])
            if r.action == "flag":
                flag(ex, [r.id])
            else:  # redact: applied by the redaction stage
                ex.policy_rule_ids.append(r.id)
        if pol.injection is not None:
            hits = pol.injection.scan(texts)
            if hits and p.prompt_injection.action == "block":
                raise deny(ex, PolicyDenied("The request looks like a prompt-injection attempt and was refused "
                                            f"(rules: {', '.join(hits)}).", code="prompt_injection"), hits)
            if hits:
                flag(ex, hits)

    # ---- rate limits and budgets ----------------------------------------------------------------
    def _scopes(self, ex: Exchange, pol: CompiledPolicy, key: KeyRecord | None
                ) -> list[tuple[str, str, RateLimits, Budgets]]:
        out = []
        if key is not None:
            out.append(("key", f"key:{key.id}", key.rate_limits, key.budgets))
        out.append(("tenant", f"tenant:{ex.tenant}", pol.policy.rate_limits, pol.policy.budgets))
        return out

    async def check_limits(self, ex: Exchange, pol: CompiledPolicy, key: KeyRecord | None) -> None:
        scopes = self._scopes(ex, pol, key)
        taken: list[tuple[str, int]] = []
        for who, scope, rl, _ in scopes:
            for field, amount in (("requests_per_minute", 1), ("tokens_per_minute", 0)):
                rate = getattr(rl, field)
                if rate is None:
                    continue
                wait = await self.limiter.take(f"{scope}:{field}", rate, amount)
                if wait > 0:
                    for k, r in taken:  # give back what this refused request took
                        await self.limiter.charge(k, r, -1)
                    LIMITED.labels(field).inc()
                    unit = "requests" if amount else "tokens"
                    secs = max(1, math.ceil(wait))
                    raise deny(ex, RateLimited(
                        f"Rate limit reached for this {'API key' if who == 'key' else 'tenant'}: {rate} {unit} per "
                        f"minute. Retry after {secs} s.", headers={"retry-after": str(secs)}),
                        [f"rate_limits.{who}.{field}"])
                if amount:
                    taken.append((f"{scope}:{field}", rate))
        now = datetime.now(UTC)
        day, month = periods(now)
        for who, scope, _, b in scopes:
            for field, period, idx, label in (("tokens_per_day", day, 0, "daily token"),
                                              ("tokens_per_month", month, 0, "monthly token"),
                                              ("cost_per_day_usd", day, 1, "daily cost"),
                                              ("cost_per_month_usd", month, 1, "monthly cost")):
                limit = getattr(b, field)
                if limit is None:
                    continue
                used = self.usage.used(scope, period)[idx]
                if used >= limit:
                    LIMITED.labels(field).inc()
                    secs = seconds_to_reset(period, now)
                    shown = f"{int(limit)} tokens" if idx == 0 else f"${limit:.2f}"
                    resets = "at 00:00 UTC" if period.startswith("d:") else "on the 1st of next month (UTC)"
                    raise deny(ex, RateLimited(
                        f"The {label} budget of this {'API key' if who == 'key' else 'tenant'} ({shown}) is used "
                        f"up; it resets {resets}.", headers={"retry-after": str(secs)}, code="budget_exceeded"),
                        [f"budgets.{who}.{field}"])

    async def record(self, ex: Exchange, pol: CompiledPolicy, key: KeyRecord | None) -> None:
        u = ex.usage
        tokens = u.total_tokens if u.total_tokens is not None else (u.input_tokens or 0) + (u.output_tokens or 0)
        cost = cost_of(self.price_for(ex.request_model), ex) or 0.0
        scopes = self._scopes(ex, pol, key)
        self.usage.add([s for _, s, _, _ in scopes], tokens, cost)
        if tokens:
            for _, scope, rl, _ in scopes:
                if rl.tokens_per_minute is not None:
                    await self.limiter.charge(f"{scope}:tokens_per_minute", rl.tokens_per_minute, tokens)

    async def _record_after(self, ex: Exchange, pol: CompiledPolicy, key: KeyRecord | None,
                            chunks: AsyncIterator[SSEEvent]) -> AsyncIterator[SSEEvent]:
        try:
            async for ev in chunks:
                yield ev
        finally:
            await self.record(ex, pol, key)
