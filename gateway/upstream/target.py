"""One deployment as the router tries it: its config, where and how to reach it, its circuit breaker.

Its own module so that the client (which sends to a Target) and the router (which builds and picks them)
do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Deployment, Timeouts
from gateway.providers import Provider, UrlFor
from gateway.upstream.breaker import CircuitBreaker


@dataclass(slots=True)
class Target:
    cfg: Deployment
    url_for: UrlFor  # (endpoint path, upstream model) -> URL, from the deployment's provider adapter
    headers: dict[str, str]  # content type, the deployment's own headers, the provider's auth header
    timeouts: Timeouts
    breaker: CircuitBreaker

    @classmethod
    def build(cls, dep: Deployment, provider: Provider, api_key: str | None, timeouts: Timeouts,
              breaker: CircuitBreaker) -> Target:
        headers = {"content-type": "application/json", **dep.headers, **provider.headers(dep, api_key)}
        return cls(dep, provider.url_for(dep), headers, timeouts, breaker)
