"""``create_app``: routes and the prelude every OpenAI endpoint shares (record, faults, latency).

Lean on purpose (benchmarks drive it at ~10k req/s): no middlewares, no pydantic, orjson both ways, no
per-request logging, and handlers close over one ``Shared`` context instead of looking up app keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from mock_upstream import endpoints as ep
from mock_upstream.call import JSON_HEADERS, Call, Shared, error_response, fault_response
from mock_upstream.config import MockConfig
from mock_upstream.faults import DISCONNECT, HANG
from mock_upstream.params import BadRequest
from mock_upstream.sse import drop_connection, hang
from mock_upstream.state import MockState

SHARED = web.AppKey("mock_shared", Shared)
STATE = web.AppKey("mock_state", MockState)
MAX_BODY_BYTES = 64 * 1024 * 1024
Impl = Callable[[Call], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _read_json(request: web.Request) -> tuple[bytes, Any, str | None]:
    """(raw body, parsed body, problem); the parsed body is the raw text when it is not JSON."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, raw.decode("utf-8", "replace"), "We could not parse the JSON body of your request."
    if not isinstance(body, dict):
        return raw, body, "The body of your request must be a JSON object."
    return raw, body, None


def _header_number(headers: Any, name: str, kind: type[float] | type[int]) -> float:
    try:
        value = kind(headers[name])
    except ValueError:
        raise BadRequest(f"header {name} must be a number", param=name) from None
    if value < 0:
        raise BadRequest(f"header {name} must be >= 0", param=name)
    return value


def _request_settings(headers: Any, cfg: MockConfig) -> tuple[float, int]:
    """(latency ms, natural reply tokens) from the config and the x-mock-* headers."""
    latency, tokens = cfg.latency_ms, cfg.completion_tokens
    if "x-mock-latency-ms" in headers:
        latency = _header_number(headers, "x-mock-latency-ms", float)
    if "x-mock-tokens" in headers:
        tokens = int(_header_number(headers, "x-mock-tokens", int))
    return latency, tokens


async def _apply_fault(shared: Shared, request: web.Request, fault: int | str) -> web.StreamResponse:
    """Answer an injected fault (a disconnect during a stream is left to the stream writer)."""
    shared.state.record_fault(fault)
    if fault == HANG:
        return await hang(request, shared.stopping)
    if isinstance(fault, int):
        return fault_response(fault, shared.cfg, request.headers.get("x-request-id"))
    return drop_connection(request)  # DISCONNECT without a stream to cut


def _endpoint(shared: Shared, name: str, impl: Impl, *, has_body: bool = True, streams: bool = True) -> Handler:
    state, faults, cfg = shared.state, shared.faults, shared.cfg

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = request.headers
        request_id = headers.get("x-request-id")
        raw, body, problem = await _read_json(request) if has_body else (b"", {}, None)
        state.record(name, request, body)
        try:
            plan = faults.plan(headers.get("x-mock-fault"))
            latency_ms, natural = _request_settings(headers, cfg)
        except ValueError as exc:
            param = exc.param if isinstance(exc, BadRequest) and exc.param else "x-mock-fault"
            return error_response(400, str(exc), request_id, code="invalid_mock_header", param=param)
        delay_ms = latency_ms + plan.delay_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        fault = plan.fault
        if fault is not None:
            streaming = streams and problem is None and body.get("stream") is True
            if fault != DISCONNECT or not streaming:
                return await _apply_fault(shared, request, fault)
            state.record_fault(fault)
        if problem is not None:
            return error_response(400, problem, request_id, code="invalid_json")
        try:
            return await impl(Call(shared, request, raw, body, request_id, fault == DISCONNECT, natural))
        except BadRequest as exc:
            return error_response(400, str(exc), request_id, code=exc.code, param=exc.param)

    return handler


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS)


async def stats(request: web.Request) -> web.Response:
    """Counts per endpoint, injected faults, and the recent requests (``?last=N`` for the newest N)."""
    last = request.query.get("last")
    snapshot = request.app[STATE].snapshot(int(last) if last and last.isdigit() else None)
    return web.Response(body=orjson.dumps(snapshot, default=str), headers=JSON_HEADERS)


async def reset(request: web.Request) -> web.Response:
    """Clear the counters and the ring buffer, forget fail-times keys, restart the fault PRNG."""
    shared = request.app[SHARED]
    shared.state.reset()
    shared.faults.reset()
    return web.Response(body=b'{"reset":true}', headers=JSON_HEADERS)


async def _on_shutdown(app: web.Application) -> None:
    app[SHARED].stopping.set()  # hanging and paced requests end now instead of holding up shutdown


def create_app(cfg: MockConfig | None = None) -> web.Application:
    """The mock upstream as an aiohttp application (OpenAI API under /v1, test hooks under /mock)."""
    shared = Shared(cfg or MockConfig())
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SHARED] = shared
    app[STATE] = shared.state
    app.on_shutdown.append(_on_shutdown)
    add = app.router.add_route
    add("POST", "/v1/chat/completions", _endpoint(shared, "chat.completions", ep.chat_completions))
    add("POST", "/v1/completions", _endpoint(shared, "completions", ep.completions))
    add("POST", "/v1/embeddings", _endpoint(shared, "embeddings", ep.embeddings, streams=False))
    add("POST", "/v1/responses", _endpoint(shared, "responses", ep.responses))
    add("GET", "/v1/models", _endpoint(shared, "models", ep.list_models, has_body=False, streams=False))
    add("GET", "/v1/models/{model:.+}", _endpoint(shared, "models", ep.get_model, has_body=False, streams=False))
    add("GET", "/healthz", healthz)
    add("GET", "/mock/stats", stats)
    add("POST", "/mock/reset", reset)
    return app
