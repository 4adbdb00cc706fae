"""Aliases -> deployments: weighted load balancing within a priority, fallback to the next deployment,
retries with exponential backoff and full jitter, per-deployment circuit breakers."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.config import Deployment, ModelAlias, Price, RoutingConfig
from gateway.endpoints import Endpoint
from gateway.errors import (
    GatewayError,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from gateway.exchange import Exchange, Reply
from gateway.metrics import CIRCUIT_OPEN, UPSTREAM_ATTEMPTS, UPSTREAM_RETRIES, child
from gateway.providers import provider_for
from gateway.upstream.breaker import CircuitBreaker
from gateway.upstream.client import AttemptFailed, send_once
from gateway.upstream.target import Target

log = logging.getLogger(__name__)

WILDCARD = "*"


@dataclass(slots=True)
class Route:
    alias: str
    targets: list[Target]
    price: Price | None


def _api_key(dep: Deployment) -> str | None:
    if dep.api_key_env:
        return os.environ.get(dep.api_key_env)
    if dep.api_key_file:
        return dep.api_key_file.read_text().strip()
    return None


def resolve_key_errors(models: Mapping[str, ModelAlias]) -> list[str]:
    """Startup check: every referenced key source exists (reported all at once)."""
    errors = []
    for alias, m in models.items():
        for i, dep in enumerate(m.deployments):
            if dep.api_key_env and dep.api_key_env not in os.environ:
                errors.append(f"models.{alias}.deployments.{i}.api_key_env: ${dep.api_key_env} is not set")
            if dep.api_key_file and not dep.api_key_file.is_file():
                errors.append(f"models.{alias}.deployments.{i}.api_key_file: {dep.api_key_file} not found")
    return errors


class Router:
    def __init__(self, models: Mapping[str, ModelAlias], routing: RoutingConfig,
                 forward_headers: tuple[str, ...] = ()) -> None:
        self.routing = routing
        self.forward_headers = tuple(h.lower() for h in forward_headers)
        self.session: aiohttp.ClientSession | None = None
        self.routes: dict[str, Route] = {}
        self._opened: set[str] = set()
        cb = routing.circuit_breaker
        for alias, m in models.items():
            targets = [Target.build(dep, provider_for(dep.provider), _api_key(dep), dep.timeouts or routing.timeouts,
                                    CircuitBreaker(cb.failure_threshold, cb.cooldown_s)) for dep in m.deployments]
            self.routes[alias] = Route(alias, targets, m.price)

    async def start(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=self.routing.max_connections,
                                             limit_per_host=self.routing.max_connections_per_host,
                                             ttl_dns_cache=300, enable_cleanup_closed=True)
            # one session serves every tenant: cookies an upstream sets must never ride on another request
            self.session = aiohttp.ClientSession(connector=connector, read_bufsize=1 << 20,
                                                 auto_decompress=True, skip_auto_headers=("User-Agent",),
                                                 cookie_jar=aiohttp.DummyCookieJar())

    async def stop(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    def aliases(self) -> list[str]:
        return [a for a in self.routes if a != WILDCARD]

    def model_label(self, model: str | None) -> str:
        """The metric label for a requested model: the alias when it is configured by name, else "other"
        (what a catch-all route accepts is the client's choice and must not become a label value)."""
        return model if model is not None and model != WILDCARD and model in self.routes else "other"

    def resolve(self, model: str) -> Route:
        route = self.routes.get(model) or self.routes.get(WILDCARD)
        if route is None:
            raise ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.",
                                param="model")
        return route

    def _plan(self, route: Route) -> list[Target]:
        """Deployments in the order to try: by priority, weighted-random order within a priority."""
        plan: list[Target] = []
        for prio in sorted({t.cfg.priority for t in route.targets}):
            group = [t for t in route.targets if t.cfg.priority == prio]
            while group:
                pick = random.choices(group, weights=[t.cfg.weight for t in group])[0] if len(group) > 1 else group[0]
                plan.append(pick)
                group.remove(pick)
        return plan

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        r = self.routing.retry
        delay = random.uniform(0, min(r.backoff_max_s, r.backoff_base_s * (2 ** (attempt - 1))))
        if retry_after is not None:
            delay = max(delay, min(retry_after, r.backoff_max_s))
        return delay

    def forwarded(self, client_headers: Any) -> dict[str, str]:
        if not self.forward_headers or client_headers is None:
            return {}
        out = {}
        for name, value in client_headers.items():
            low = name.lower()
            if any(low == h or (h.endswith("*") and low.startswith(h[:-1])) for h in self.forward_headers):
                out[low] = value
        return out

    async def send(self, ex: Exchange, api: Endpoint, body: dict[str, Any]) -> Reply:
        assert self.session is not None, "Router.start() not called"
        route = self.resolve(ex.request_model or "")
        plan = self._plan(route)
        max_attempts = self.routing.retry.max_attempts
        last: AttemptFailed | None = None
        extra = self.forwarded(ex.headers)
        for attempt in range(max_attempts):
            target = self._next_target(plan, attempt)
            if target is None:
                break
            if attempt > 0:
                child(UPSTREAM_RETRIES, route.alias).inc()
                await asyncio.sleep(self._backoff(attempt, last.retry_after if last else None))
            ex.attempts += 1
            ex.deployment = target.cfg.name
            ex.provider = target.cfg.provider
            upstream_body = {**body, "model": target.cfg.model or ex.request_model}
            try:
                reply = await send_once(self.session, target, ex, api, upstream_body, extra,
                                        self.routing.retry.retry_on_status)
            except AttemptFailed as exc:
                self._failed(target, exc)
                last = exc
                if not exc.retriable:
                    break
                continue
            target.breaker.record_success()
            if target.breaker.failures == 0 and target.cfg.name in self._opened:
                self._opened.discard(target.cfg.name)
                child(CIRCUIT_OPEN, target.cfg.name).set(0)
            child(UPSTREAM_ATTEMPTS, target.cfg.name, "ok").inc()
            return reply
        raise self._final_error(route, last)

    def _next_target(self, plan: list[Target], attempt: int) -> Target | None:
        n = len(plan)
        for i in range(n):
            t = plan[(attempt + i) % n]
            if t.breaker.allow():
                return t
        return None

    def _failed(self, target: Target, exc: AttemptFailed) -> None:
        child(UPSTREAM_ATTEMPTS, target.cfg.name, exc.kind).inc()
        if exc.counts_against_deployment:
            target.breaker.record_failure()
            if target.breaker.state == "open":
                self._opened.add(target.cfg.name)
                child(CIRCUIT_OPEN, target.cfg.name).set(1)
                log.warning("circuit opened for deployment %s", target.cfg.name)
        else:
            target.breaker.record_success()

    def _final_error(self, route: Route, last: AttemptFailed | None) -> GatewayError:
        if last is None:
            return UpstreamUnavailable(
                f"No deployment of model '{route.alias}' is available (circuit open); retry later.",
                headers={"retry-after": str(int(self.routing.circuit_breaker.cooldown_s))})
        if last.status == 429:
            headers = {"retry-after": str(int(last.retry_after))} if last.retry_after else {}
            return RateLimited(f"Upstream rate limit for model '{route.alias}': {last.message}", headers=headers)
        if last.status is not None and last.body is not None and last.status < 500:
            return UpstreamStatusError(last.status, last.body, last.message)
        if last.error is not None:
            return last.error
        return UpstreamError(f"Upstream error for model '{route.alias}': {last.message}")

    def price(self, alias: str | None) -> Price | None:
        route = self.routes.get(alias or "") or self.routes.get(WILDCARD)
        return route.price if route else None
