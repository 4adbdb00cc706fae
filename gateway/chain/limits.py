"""Limits stage (right after policy): rate limits, then budgets, per API key, then per tenant; usage is
recorded once the answer is written (for streams: when the stream ends).

The buckets live behind ``LimiterStore`` (in memory per process; a shared store enforces across
replicas) and the token/cost counters in ``UsageTracker``; both are injected. The order of effects is
the contract: every requests/min bucket is taken before any budget is read, so when several limits
apply the first in ``(key rpm, key tpm, tenant rpm, tenant tpm, key budgets, tenant budgets)`` refuses;
a rate refusal gives back the requests it already took, a budget refusal does not. It is the last
admission check before the upstream, so it counts the policy decision of every request it admits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Protocol

from gateway.auth.keys import KeyRecord
from gateway.chain.base import Next
from gateway.chain.emit import cost_of
from gateway.config import Price
from gateway.errors import GatewayError, RateLimited, ServiceUnavailable
from gateway.exchange import Exchange, Reply, SSEEvent
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.decision import count_admitted, count_denied, deny, evaluation_failed
from gateway.governance.limiter import LimiterStore
from gateway.governance.metrics import LIMITED
from gateway.governance.policy import Budgets, RateLimits
from gateway.governance.usage import UsageTracker, periods, seconds_to_reset

Scope = tuple[str, str, RateLimits, Budgets]  # (who: key | tenant, usage/bucket scope, rate limits, budgets)

_RATES = (("requests_per_minute", 1), ("tokens_per_minute", 0))  # (field, amount taken on admission)
_BUDGETS = (("tokens_per_day", 0, 0, "daily token"), ("tokens_per_month", 1, 0, "monthly token"),
            ("cost_per_day_usd", 0, 1, "daily cost"), ("cost_per_month_usd", 1, 1, "monthly cost"))
# (field, period: 0 day / 1 month, counter: 0 tokens / 1 cost, what the message calls it)


class KeyLookup(Protocol):
    """The API keys' own limits and budgets (``KeyStore``, reloaded while the gateway runs)."""

    def by_id(self, key_id: str | None) -> KeyRecord | None: ...


def scopes(ex: Exchange, pol: CompiledPolicy, key: KeyRecord | None) -> list[Scope]:
    out: list[Scope] = []
    if key is not None:
        out.append(("key", f"key:{key.id}", key.rate_limits, key.budgets))
    out.append(("tenant", f"tenant:{ex.tenant}", pol.policy.rate_limits, pol.policy.budgets))
    return out


def _whose(who: str) -> str:
    return "API key" if who == "key" else "tenant"


def _rate_refusal(ex: Exchange, who: str, field: str, rate: int, wait: float) -> GatewayError:
    LIMITED.labels(field).inc()
    unit = "requests" if field == "requests_per_minute" else "tokens"
    secs = max(1, math.ceil(wait))
    return deny(ex, RateLimited(f"Rate limit reached for this {_whose(who)}: {rate} {unit} per minute. Retry "
                                f"after {secs} s.", headers={"retry-after": str(secs)}),
                [f"rate_limits.{who}.{field}"])


def _budget_refusal(ex: Exchange, who: str, field: str, limit: float, period: str, now: datetime,
                    label: str, counter: int) -> GatewayError:
    LIMITED.labels(field).inc()
    secs = seconds_to_reset(period, now)
    shown = f"{int(limit)} tokens" if counter == 0 else f"${limit:.2f}"
    resets = "at 00:00 UTC" if period.startswith("d:") else "on the 1st of next month (UTC)"
    return deny(ex, RateLimited(f"The {label} budget of this {_whose(who)} ({shown}) is used up; it resets "
                                f"{resets}.", headers={"retry-after": str(secs)}, code="budget_exceeded"),
                [f"budgets.{who}.{field}"])


class LimitsStage:
    name = "limits"

    def __init__(self, keys: KeyLookup, limiter: LimiterStore, usage: UsageTracker,
                 price_for: Callable[[str | None], Price | None]) -> None:
        self.keys = keys
        self.limiter = limiter
        self.usage = usage
        self.price_for = price_for

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        pol: CompiledPolicy | None = ex.scratch.get("policy")
        if pol is None:  # only the policy stage puts it there: a chain without it refuses everything
            raise ServiceUnavailable("The gateway has no policy for this request; it was refused.",
                                     code="policy_unavailable")
        key = self.keys.by_id(ex.key_id)
        try:
            found = scopes(ex, pol, key)
            await self.take_rates(ex, found)
            self.check_budgets(ex, found)
        except GatewayError:
            count_denied()
            raise
        except Exception as exc:  # a limiter store that fails (a shared one is a network call)
            raise evaluation_failed(ex) from exc
        count_admitted(ex)
        reply = await call_next(ex)
        if reply.chunks is None:  # usage is accounted once the answer is written
            reply.after.append(functools.partial(self.record, ex, found))
        else:
            reply.chunks = self._record_after(ex, found, reply.chunks)
        return reply

    async def take_rates(self, ex: Exchange, found: list[Scope]) -> None:
        """Take one request from each requests/min bucket and admit while each tokens/min bucket is positive
        (tokens are charged in ``record``); a refusal gives back the requests this request took."""
        taken: list[tuple[str, int]] = []
        for who, scope, rl, _ in found:
            for field, amount in _RATES:
                rate = getattr(rl, field)
                if rate is None:
                    continue
                wait = await self.limiter.take(f"{scope}:{field}", rate, amount)
                if wait > 0:
                    for k, r in taken:
                        await self.limiter.charge(k, r, -1)
                    raise _rate_refusal(ex, who, field, rate, wait)
                if amount:
                    taken.append((f"{scope}:{field}", rate))

    def check_budgets(self, ex: Exchange, found: list[Scope]) -> None:
        """Refuse when a counter of the current UTC day or month has reached its budget (usage is only
        known after an answer, so the request that crosses a budget is the last one admitted)."""
        now = datetime.now(UTC)
        current = periods(now)  # (day, month)
        for who, scope, _, b in found:
            for field, period, counter, label in _BUDGETS:
                limit = getattr(b, field)
                if limit is not None and self.usage.used(scope, current[period])[counter] >= limit:
                    raise _budget_refusal(ex, who, field, limit, current[period], now, label, counter)

    async def record(self, ex: Exchange, found: list[Scope]) -> None:
        """The answer's tokens and cost, added to every budget counter and tokens/min bucket of its scopes."""
        u = ex.usage
        tokens = u.total_tokens if u.total_tokens is not None else (u.input_tokens or 0) + (u.output_tokens or 0)
        cost = cost_of(self.price_for(ex.request_model), ex) or 0.0
        self.usage.add([s for _, s, _, _ in found], tokens, cost)
        if tokens:
            for _, scope, rl, _ in found:
                if rl.tokens_per_minute is not None:
                    await self.limiter.charge(f"{scope}:tokens_per_minute", rl.tokens_per_minute, tokens)

    async def _record_after(self, ex: Exchange, found: list[Scope], chunks: AsyncIterator[SSEEvent]
                            ) -> AsyncIterator[SSEEvent]:
        try:
            async for ev in chunks:
                yield ev
        finally:
            await self.record(ex, found)

