"""Terminal stage: send to the routed upstream (the router does retries, fallback, circuit breaking)."""

from __future__ import annotations

from gateway.chain.base import Exchange, Reply
from gateway.upstream.router import Router

PATHS = {"chat.completions": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings",
         "responses": "/responses"}


class UpstreamCall:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, ex: Exchange) -> Reply:
        body = ex.body
        if ex.stream and ex.endpoint in ("chat.completions", "completions"):
            so = body.get("stream_options") or {}
            ex.client_wants_usage = bool(so.get("include_usage"))
            if not ex.client_wants_usage:
                body = {**body, "stream_options": {**so, "include_usage": True}}
        return await self.router.send(ex, PATHS[ex.endpoint], body)
