"""The limits stage, called directly with an injected limiter and usage counters
(tests/governance/test_limits_reload.py covers rate limits and budgets through the real gateway)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.chain.base import build_chain, run_after
from gateway.chain.limits import LimitsStage
from gateway.chain.policy import PolicyStage
from gateway.config import Price
from gateway.errors import GatewayError
from gateway.exchange import Exchange, SSEEvent
from gateway.governance.limiter import InMemoryLimiter, LimiterStore
from gateway.governance.usage import UsageTracker, periods

from .fakes import FailingLimiter, FakeNext, InMemoryPolicies, Keys, compile_policy, counter, exchange, key

DECISIONS = "gatewatch_policy_decisions_total"
NOW = 1000.0


def stage(limiter: LimiterStore | None = None, usage: UsageTracker | None = None, *keys: Any,
          price: Price | None = None) -> LimitsStage:
    return LimitsStage(Keys({k.id: k for k in keys}), limiter or InMemoryLimiter(clock=lambda: NOW),
                       usage or UsageTracker(None), lambda model: price)


def today() -> str:
    return periods(datetime.now(UTC))[0]


def used_up(usage: UsageTracker, scope: str, tokens: int = 0, cost: float = 0.0) -> UsageTracker:
    usage.add([scope], tokens, cost)
    return usage


async def refused(limits: LimitsStage, ex: Exchange, nxt: FakeNext | None = None) -> GatewayError:
    nxt = nxt or FakeNext()
    with pytest.raises(GatewayError) as info:
        await limits(ex, nxt)
    assert not nxt.called
    return info.value


async def test_key_rate_limit_429_with_retry_after() -> None:
    k = key(rate_limits={"requests_per_minute": 2})
    limits = stage(None, None, k)
    pol = compile_policy()
    for _ in range(2):
        await limits(exchange(policy=pol, key_id="k1"), FakeNext())
    ex = exchange(policy=pol, key_id="k1")
    limited = counter("gatewatch_limited_total", kind="requests_per_minute")
    err = await refused(limits, ex)
    assert (err.status, err.code, err.headers) == (429, "rate_limit_exceeded", {"retry-after": "30"})
    assert (ex.policy_decision, ex.policy_rule_ids) == ("deny", ["rate_limits.key.requests_per_minute"])
    assert "2 requests per minute" in err.message and "API key" in err.message
    assert counter("gatewatch_limited_total", kind="requests_per_minute") == limited + 1


async def test_a_rate_refusal_gives_back_what_the_request_took() -> None:
    """Key rpm is taken first; when the tenant's rpm then refuses, the key's request is given back."""
    limiter = InMemoryLimiter(clock=lambda: NOW)
    pol = compile_policy({"rate_limits": {"requests_per_minute": 1}})
    limits = stage(limiter, None, key(rate_limits={"requests_per_minute": 5}))
    await limits(exchange(policy=pol, key_id="k1"), FakeNext())  # key 4 left, tenant 0 left
    ex = exchange(policy=pol, key_id="k1")
    await refused(limits, ex)
    assert ex.policy_rule_ids == ["rate_limits.tenant.requests_per_minute"]
    assert await limiter.take("key:k1:requests_per_minute", 5, 4) == 0  # all 4 still there


async def test_rates_are_taken_before_budgets_and_a_budget_refusal_keeps_them() -> None:
    limiter = InMemoryLimiter(clock=lambda: NOW)
    pol = compile_policy({"budgets": {"tokens_per_day": 10}})
    usage = used_up(UsageTracker(None), "tenant:acme", tokens=10)
    limits = stage(limiter, usage, key(rate_limits={"requests_per_minute": 3}))
    ex = exchange(policy=pol, key_id="k1")
    err = await refused(limits, ex)
    assert (err.status, err.code) == (429, "budget_exceeded")
    assert ex.policy_rule_ids == ["budgets.tenant.tokens_per_day"]
    assert "daily token budget of this tenant (10 tokens)" in err.message
    assert int(err.headers["retry-after"]) >= 1
    assert await limiter.take("key:k1:requests_per_minute", 3, 3) > 0  # the refused request's take stays


async def test_when_several_limits_apply_the_key_rate_wins() -> None:
    pol = compile_policy({"rate_limits": {"requests_per_minute": 1}, "budgets": {"cost_per_month_usd": 1.0}})
    usage = used_up(UsageTracker(None), "tenant:acme", cost=5.0)
    k = key(rate_limits={"requests_per_minute": 1}, budgets={"tokens_per_day": 1})
    limits = stage(None, used_up(usage, "key:k1", tokens=5), k)
    first, second = exchange(policy=pol, key_id="k1"), exchange(policy=pol, key_id="k1")
    await refused(limits, first)
    assert first.policy_rule_ids == ["budgets.key.tokens_per_day"]  # key budgets before tenant budgets
    await refused(limits, second)
    assert second.policy_rule_ids == ["rate_limits.key.requests_per_minute"]  # rates before any budget


async def test_usage_is_recorded_after_the_answer() -> None:
    """Non-streamed: once ``run_after`` runs (the answer is written); tokens charge tokens/min too."""
    limiter = InMemoryLimiter(clock=lambda: NOW)
    usage = UsageTracker(None)
    pol = compile_policy({"rate_limits": {"tokens_per_minute": 100}})
    limits = stage(limiter, usage, key(), price=Price(input_per_1m=1_000_000, output_per_1m=2_000_000))
    ex = exchange(policy=pol, key_id="k1")
    reply = await limits(ex, FakeNext())
    assert usage.used("tenant:acme", today()) == (0.0, 0.0)
    ex.usage.input_tokens, ex.usage.output_tokens, ex.usage.total_tokens = 30, 20, 50
    await run_after(reply)
    for scope in ("key:k1", "tenant:acme"):
        assert usage.used(scope, today()) == (50.0, 70.0)
    assert await limiter.take("tenant:acme:tokens_per_minute", 100, 51) > 0  # 50 charged


async def test_streamed_usage_is_recorded_when_the_stream_ends_even_early() -> None:
    usage = UsageTracker(None)
    events = [SSEEvent(data=b"{}", obj={}), SSEEvent(data=b"[DONE]")]
    ex = exchange(policy=compile_policy())
    reply = await stage(None, usage)(ex, FakeNext(events=events))
    assert reply.chunks is not None and reply.after == []
    ex.usage.total_tokens = 7
    async for _ in reply.chunks:
        break  # the client hangs up after the first event
    await reply.chunks.aclose()  # type: ignore[attr-defined]
    assert usage.used("tenant:acme", today()) == (7.0, 0.0)


async def test_a_failing_limiter_refuses_fail_closed() -> None:
    pol = compile_policy({"rate_limits": {"requests_per_minute": 10}})
    ex = exchange(policy=pol)
    denied = counter(DECISIONS, decision="deny")
    err = await refused(stage(FailingLimiter()), ex)
    assert (err.status, err.code) == (503, "policy_error")
    assert (ex.policy_decision, ex.policy_rule_ids) == ("deny", ["policy.error"])
    assert counter(DECISIONS, decision="deny") == denied


async def test_without_a_policy_on_the_exchange_nothing_passes() -> None:
    err = await refused(stage(), exchange())
    assert (err.status, err.code) == (503, "policy_unavailable")


@pytest.mark.parametrize(("policy", "decision"), [
    ({}, "allow"),
    ({"patterns": [{"id": "hi", "keywords": ["hello"], "action": "flag"}]}, "flag"),
    ({"rate_limits": {"requests_per_minute": 1}}, "deny"),
])
async def test_policy_then_limits_count_each_decision_once(policy: dict[str, Any], decision: str) -> None:
    limits = stage()
    chain = build_chain([PolicyStage(InMemoryPolicies.of(policy)), limits], FakeNext())
    if decision == "deny":
        await chain(exchange())  # takes the one request of the minute
    before = {d: counter(DECISIONS, decision=d) for d in ("allow", "flag", "deny")}
    try:
        await chain(exchange())
    except GatewayError:
        assert decision == "deny"
    after = {d: counter(DECISIONS, decision=d) for d in ("allow", "flag", "deny")}
    assert {d: after[d] - before[d] for d in after} == {d: float(d == decision) for d in after}

