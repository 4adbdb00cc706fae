"""HTTP routes: the OpenAI-compatible API (through the chain), models, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.chain.auth import AuthStage
from gateway.chain.base import Next, run_after
from gateway.endpoints import CHAT, ENDPOINTS
from gateway.errors import ModelNotFound, PayloadTooLarge, ServiceUnavailable
from gateway.exchange import Exchange, Reply
from gateway.http.middlewares import REQUEST_ID
from gateway.metrics import IN_FLIGHT
from gateway.upstream.router import Router

log = logging.getLogger(__name__)
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}


class Api:
    def __init__(self, chain: Next, auth: AuthStage, router: Router, max_body_bytes: int,
                 readiness: dict[str, Any]) -> None:
        self.chain = chain
        self.auth = auth
        self.router = router
        self.max_body_bytes = max_body_bytes
        self.readiness = readiness  # {"shutting_down": bool, "emitter": callable -> dict}
        # post-response bookkeeping that outlived its handler (the client hung up): drained at shutdown
        self._after: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [
            *(web.post("/v1" + api.path, self._proxy(api.name)) for api in ENDPOINTS.values()),
            web.get("/v1/models", self.models),
            web.get("/v1/models/{model}", self.model),
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
        ]

    def _proxy(self, endpoint: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.proxy(request, endpoint)

        return handler

    async def proxy(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        ex = Exchange(request_id=request[REQUEST_ID], endpoint=endpoint, body={}, headers=request.headers,
                      ts_start=time.time(), t0=time.perf_counter())
        if self.readiness.get("shutting_down"):
            ex.scratch["body_error"] = ServiceUnavailable("The gateway is shutting down; retry.")
        elif request.content_length is not None and request.content_length > self.max_body_bytes:
            ex.scratch["body_error"] = self._too_large()
        else:
            try:
                ex.scratch["raw"] = await request.read()
            except web.HTTPRequestEntityTooLarge:
                ex.scratch["body_error"] = self._too_large()
        IN_FLIGHT.inc()
        try:
            reply = await self.chain(ex)
            return await self.write(request, ex, reply)
        finally:
            IN_FLIGHT.dec()

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than the gateway's limit of {self.max_body_bytes} bytes.")

    async def write(self, request: web.Request, ex: Exchange, reply: Reply) -> web.StreamResponse:
        headers = {**reply.headers, "x-request-id": ex.request_id}
        if reply.chunks is None:
            try:  # send the answer now, then do the bookkeeping (events redaction, usage, the event)
                body = reply.raw_body if reply.raw_body is not None else orjson.dumps(reply.body)
                resp = web.Response(status=reply.status, body=body, content_type="application/json",
                                    headers=headers)
                with contextlib.suppress(ConnectionResetError, ConnectionError):
                    await resp.prepare(request)
                    await resp.write_eof()
            finally:
                await self._bookkeeping(reply)
            return resp
        resp = web.StreamResponse(status=reply.status, headers={**SSE_HEADERS, **headers})
        chunks = reply.chunks
        try:
            await resp.prepare(request)
            async for ev in chunks:
                await resp.write(ev.encode())
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away: closing `chunks` below cancels the upstream request
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(chunks.aclose())  # type: ignore[attr-defined]
        return resp

    async def _bookkeeping(self, reply: Reply) -> None:
        """Run the reply's post-response steps (events redaction, usage, the event) in a task of their own:
        a client that closes its connection right after reading cancels the handler, and that must not
        cancel the audit event with it. The handler waits for the task (shielded); if the handler is
        cancelled meanwhile, the task carries on and ``drain`` waits for it at shutdown."""
        task = asyncio.get_running_loop().create_task(run_after(reply))
        self._after.add(task)
        task.add_done_callback(self._after.discard)
        await asyncio.shield(task)

    async def drain(self, timeout: float) -> None:
        """Wait for bookkeeping still running after its handler ended (at shutdown, before the emitter stops)."""
        if self._after:
            _, pending = await asyncio.wait(set(self._after), timeout=timeout)
            for task in pending:  # a step hung past the grace period: its event is lost, and said so
                task.cancel()
            if pending:
                log.error("%d post-response bookkeeping task(s) still running after %.0fs; cancelled",
                          len(pending), timeout)

    def _model_obj(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "gatewatch"}

    def _visible(self, request: web.Request) -> list[str]:
        ex = Exchange(request_id=request[REQUEST_ID], endpoint=CHAT.name, body={}, headers=request.headers)
        self.auth.authenticate(ex)
        names = self.router.aliases()
        return [n for n in names if ex.allowed_models is None or n in ex.allowed_models]

    async def models(self, request: web.Request) -> web.Response:
        data = [self._model_obj(n) for n in self._visible(request)]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self._visible(request):
            raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.", param="model")
        return web.Response(body=orjson.dumps(self._model_obj(name)), content_type="application/json")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        status = self.readiness.get("emitter", lambda: {})()
        policy = self.readiness.get("policy", lambda: {})()  # a rejected policy file is a detail, still ready
        if self.readiness.get("shutting_down") or not self.readiness.get("started"):
            return web.json_response({"status": "not ready", "emitter": status, "policy": policy}, status=503)
        return web.json_response({"status": "ready", "emitter": status, "policy": policy})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"content-type": CONTENT_TYPE_LATEST})
