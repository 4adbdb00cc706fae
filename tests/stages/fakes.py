"""Shared fakes for calling chain stages directly (no HTTP server, no upstream): an Exchange builder, a
recording ``Next``, an in-memory policy source, a key lookup and limiters. The end-to-end suites
(tests/governance, tests/gateway) cover the same behaviour through the real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY

from gateway.auth.keys import KeyRecord
from gateway.exchange import Exchange, Reply, SSEEvent
from gateway.governance.compiled import CompiledPolicy, RedactorFactory
from gateway.governance.loader import PolicySet
from gateway.governance.policy import Budgets, RateLimits, TenantPolicy
from gateway.redaction import RedactionConfig, Redactor

NO_PII: dict[str, Any] = {"pii": {"input": {}, "events": {}}}  # no redactor: no presidio engine to build


def _no_redactor(cfg: RedactionConfig) -> Redactor:
    raise AssertionError("this policy has PII actions: pass make_redactor")


def compile_policy(policy: Mapping[str, Any] | None = None, *, tenant: str = "default", version: str = "v1",
                   make_redactor: RedactorFactory = _no_redactor) -> CompiledPolicy:
    """A policy as the store would serve it; without PII actions unless ``policy`` sets ``pii``."""
    data = {**NO_PII, **(policy or {})}
    return CompiledPolicy.build(tenant, version, TenantPolicy.model_validate(data), make_redactor)


@dataclass
class InMemoryPolicies:
    """A ``PolicySource`` holding a fixed ``PolicySet`` (``current`` None: no policy loaded)."""

    current: PolicySet | None

    @classmethod
    def of(cls, default: Mapping[str, Any] | None = None, tenants: Mapping[str, Mapping[str, Any]] | None = None,
           refused: frozenset[str] = frozenset()) -> InMemoryPolicies:
        per = {t: compile_policy(p, tenant=t) for t, p in (tenants or {}).items()}
        return cls(PolicySet(compile_policy(default), per, refused))


def exchange(body: Mapping[str, Any] | None = None, *, endpoint: str = "chat.completions",
             policy: CompiledPolicy | None = None, **fields: Any) -> Exchange:
    """An Exchange as the parse stage leaves it: ``request_model`` from the body, tenant ``acme``."""
    b = dict(body) if body is not None else {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    ex = Exchange(request_id="req-1", endpoint=endpoint, body=b, headers={}, tenant=fields.pop("tenant", "acme"),
                  request_model=b.get("model"), **fields)
    if policy is not None:  # what the policy stage puts there for the stages after it
        ex.scratch["policy"] = policy
        ex.policy_version = policy.version
    return ex


@dataclass
class FakeNext:
    """The rest of the chain: records the exchanges it saw, answers ``reply`` (a fresh one per call by
    default), or a stream of ``events`` when given."""

    reply: Callable[[], Reply] = Reply
    events: list[SSEEvent] | None = None
    seen: list[Exchange] = field(default_factory=list)

    @property
    def called(self) -> bool:
        return bool(self.seen)

    async def __call__(self, ex: Exchange) -> Reply:
        self.seen.append(ex)
        reply = self.reply()
        if self.events is not None:
            reply.chunks = _stream(self.events)
        return reply


async def _stream(events: list[SSEEvent]) -> AsyncIterator[SSEEvent]:
    for ev in events:
        yield ev


@dataclass
class Keys:
    """A ``KeyLookup`` over fixed records."""

    records: dict[str, KeyRecord] = field(default_factory=dict)

    def by_id(self, key_id: str | None) -> KeyRecord | None:
        return self.records.get(key_id) if key_id is not None else None


def key(key_id: str = "k1", **limits: Any) -> KeyRecord:
    """A key of tenant ``acme``; ``limits``: ``rate_limits`` / ``budgets`` dicts."""
    return KeyRecord(id=key_id, sha256="0" * 64, tenant="acme",
                     rate_limits=RateLimits(**limits.get("rate_limits", {})),
                     budgets=Budgets(**limits.get("budgets", {})))


class FailingLimiter:
    """A ``LimiterStore`` whose backend is down (a shared store is a network call)."""

    async def take(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> float:
        raise ConnectionError("limiter store unreachable")

    async def charge(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> None:
        raise ConnectionError("limiter store unreachable")


def counter(name: str, **labels: str) -> float:
    """A metric's current value (0 when never incremented)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
