"""Terminal stage: send to the routed upstream (the router does retries, fallback, circuit breaking)."""

from __future__ import annotations

from gateway.endpoints import endpoint_for
from gateway.exchange import Exchange, Reply
from gateway.upstream.router import Router


class UpstreamCall:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, ex: Exchange) -> Reply:
        api = endpoint_for(ex.endpoint)
        return await self.router.send(ex, api, api.prepare(ex, ex.body))
