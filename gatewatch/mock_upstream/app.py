"""``create_app``: routes, the per-request prelude (record, faults, latency) and the endpoint handlers.

Lean on purpose (benchmarks drive it at ~10k req/s): no middlewares, no pydantic, orjson both ways, no
per-request logging. Each endpoint is a plain function of a ``Call``; ``_endpoint`` wraps it with the
steps every inference request shares.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gatewatch.mock_upstream import payloads as p
from gatewatch.mock_upstream.config import MockConfig
from gatewatch.mock_upstream.faults import DISCONNECT, HANG, FaultInjector
from gatewatch.mock_upstream.params import (
    BadRequest,
    completion_prompts,
    embedding_inputs,
    include_usage,
    int_param,
    limit_param,
    require_str,
    responses_prompt,
)
from gatewatch.mock_upstream.responses import response_events, response_object
from gatewatch.mock_upstream.sse import SSE_HEADERS, Pacing, drop_connection, hang, send_events
from gatewatch.mock_upstream.state import MockState
from gatewatch.mock_upstream.text import (
    count_tokens,
    embedding,
    encode_base64,
    generate_many,
    messages_text,
    prompt_key,
)

CONFIG = web.AppKey("mock_config", MockConfig)
STATE = web.AppKey("mock_state", MockState)
FAULTS = web.AppKey("mock_faults", FaultInjector)
STOPPING = web.AppKey("mock_stopping", asyncio.Event)
MODELS_BODY = web.AppKey("mock_models_body", bytes)
JSON_HEADERS = {"Content-Type": "application/json"}
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class Call:
    """One inference request after the prelude."""

    request: web.Request
    body: dict[str, Any]
    cfg: MockConfig
    request_id: str | None
    disconnect: bool
    natural_tokens: int

    def json(self, body: bytes) -> web.Response:
        return web.Response(body=body, headers=_with_id(JSON_HEADERS, self.request_id))

    def pacing(self) -> Pacing:
        rate = self.cfg.tokens_per_s
        return Pacing(self.cfg.ttft_ms / 1000, 1 / rate if rate > 0 else 0.0)

    async def stream(self, events: list[p.Event]) -> web.StreamResponse:
        headers = _with_id(SSE_HEADERS, self.request_id)
        stopping = self.request.app[STOPPING]
        return await send_events(
            self.request, events, headers, self.pacing(), disconnect=self.disconnect, stopping=stopping
        )

    async def generation_time(self, tokens: int) -> None:
        """Non-streamed replies take as long as the stream would have."""
        pace = self.pacing()
        delay = pace.ttft_s + tokens * pace.token_interval_s
        if delay > 0:
            await asyncio.sleep(delay)


Impl = Callable[[Call], Awaitable[web.StreamResponse]]


def _with_id(headers: dict[str, str], request_id: str | None) -> dict[str, str]:
    return {**headers, "x-request-id": request_id} if request_id else headers


def _new_id() -> str:
    return os.urandom(12).hex()


def _error(
    status: int,
    message: str,
    request_id: str | None,
    *,
    code: str | None = None,
    param: str | None = None,
    extra: dict[str, str] | None = None,
) -> web.Response:
    headers = _with_id(JSON_HEADERS, request_id)
    if extra:
        headers = {**headers, **extra}
    return web.Response(status=status, body=p.error_body(message, status, code, param), headers=headers)


def _fault_response(status: int, cfg: MockConfig, request_id: str | None) -> web.Response:
    extra = None
    if status == 429:
        extra = {
            "Retry-After": str(int(-(-cfg.retry_after_s // 1))),
            "retry-after-ms": str(int(cfg.retry_after_s * 1000)),
        }
    message = f"mock upstream injected HTTP {status}"
    return _error(status, message, request_id, code=None if status == 429 else "mock_fault", extra=extra)


async def _read_json(request: web.Request) -> tuple[Any, str | None]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace"), "We could not parse the JSON body of your request."
    if not isinstance(body, dict):
        return body, "The body of your request must be a JSON object."
    return body, None


def _request_settings(request: web.Request, cfg: MockConfig) -> tuple[float, int]:
    """(latency ms, natural reply tokens) from config and the x-mock-* headers."""
    latency, tokens = cfg.latency_ms, cfg.completion_tokens
    headers = request.headers
    if "x-mock-latency-ms" in headers:
        latency = _header_number(headers, "x-mock-latency-ms", float)
    if "x-mock-tokens" in headers:
        tokens = int(_header_number(headers, "x-mock-tokens", int))
    return latency, tokens


def _header_number(headers: Any, name: str, kind: type[float] | type[int]) -> float:
    try:
        value = kind(headers[name])
    except ValueError:
        raise BadRequest(f"header {name} must be a number", param=name) from None
    if value < 0:
        raise BadRequest(f"header {name} must be >= 0", param=name)
    return value


def _endpoint(
    name: str, impl: Impl, *, has_body: bool = True, streams: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        app, request_id = request.app, request.headers.get("x-request-id")
        body, problem = await _read_json(request) if has_body else ({}, None)
        app[STATE].record(name, request, body)
        try:
            plan = app[FAULTS].plan(request.headers.get("x-mock-fault"))
            latency_ms, natural = _request_settings(request, app[CONFIG])
        except ValueError as exc:
            return _error(400, str(exc), request_id, code="invalid_mock_header", param=_param(exc))
        delay_ms = latency_ms + plan.delay_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        fault = plan.fault
        if fault is not None:
            app[STATE].record_fault(fault)
            streaming = streams and problem is None and body.get("stream") is True
            if fault == HANG:
                return await hang(request, app[STOPPING])
            if fault == DISCONNECT and not streaming:
                return drop_connection(request)
            if isinstance(fault, int):
                return _fault_response(fault, app[CONFIG], request_id)
        if problem is not None:
            return _error(400, problem, request_id, code="invalid_json")
        call = Call(request, body, app[CONFIG], request_id, fault == DISCONNECT, natural)
        try:
            return await impl(call)
        except BadRequest as exc:
            return _error(400, str(exc), request_id, code=exc.code, param=exc.param)

    return handler


def _param(exc: ValueError) -> str:
    return exc.param if isinstance(exc, BadRequest) and exc.param else "x-mock-fault"


async def chat_completions(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    n = int_param(body, "n", default=1, high=128)
    limit = limit_param(body, "max_completion_tokens", "max_tokens")
    gens = generate_many(prompt_key(model, messages), n, call.natural_tokens, limit)
    prompt = count_tokens(messages_text(messages))
    cid, created = "chatcmpl-" + _new_id(), int(time.time())
    if body.get("stream") is True:
        return await call.stream(p.chat_events(cid, created, model, gens, prompt, include_usage(body)))
    await call.generation_time(max(g.tokens for g in gens))
    return call.json(p.chat_completion(cid, created, model, gens, prompt))


async def completions(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    prompts, prompt_tokens = completion_prompts(body)
    n = int_param(body, "n", default=1, high=128)
    limit = limit_param(body, "max_tokens")
    natural = call.natural_tokens
    gens = [g for item in prompts for g in generate_many(prompt_key(model, item), n, natural, limit)]
    cid, created = "cmpl-" + _new_id(), int(time.time())
    if body.get("stream") is True:
        events = p.completion_events(cid, created, model, gens, prompt_tokens, include_usage(body))
        return await call.stream(events)
    await call.generation_time(max(g.tokens for g in gens))
    return call.json(p.text_completion(cid, created, model, gens, prompt_tokens))


async def embeddings(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    inputs, prompt_tokens = embedding_inputs(body)
    dims = int_param(body, "dimensions", default=call.cfg.embedding_dimensions, high=16_384)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    vectors: list[Any] = [embedding(prompt_key(model, item), dims) for item in inputs]
    if fmt == "base64":
        vectors = [encode_base64(v) for v in vectors]
    await call.generation_time(0)
    return call.json(p.embeddings_list(model, vectors, prompt_tokens))


async def responses(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    instructions, items = responses_prompt(body)
    limit = limit_param(body, "max_output_tokens")
    gen = generate_many(prompt_key(model, [instructions, items]), 1, call.natural_tokens, limit)[0]
    input_tokens = count_tokens(messages_text([instructions or "", *items]))
    rid, created = "resp_" + _new_id(), int(time.time())
    if body.get("stream") is True:
        return await call.stream(response_events(rid, created, body, gen, input_tokens))
    await call.generation_time(gen.tokens)
    return call.json(orjson.dumps(response_object(rid, created, body, gen, input_tokens)))


async def list_models(call: Call) -> web.StreamResponse:
    return call.json(call.request.app[MODELS_BODY])


async def get_model(call: Call) -> web.StreamResponse:
    return call.json(orjson.dumps(p.model_object(call.request.match_info["model"])))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS)


async def stats(request: web.Request) -> web.Response:
    last = request.query.get("last")
    snapshot = request.app[STATE].snapshot(int(last) if last and last.isdigit() else None)
    return web.Response(body=orjson.dumps(snapshot, default=str), headers=JSON_HEADERS)


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    request.app[FAULTS].reset()
    return web.Response(body=b'{"reset":true}', headers=JSON_HEADERS)


async def _on_shutdown(app: web.Application) -> None:
    app[STOPPING].set()  # hanging and paced requests end now instead of holding up shutdown


def create_app(cfg: MockConfig | None = None) -> web.Application:
    """The mock upstream as an aiohttp application (OpenAI API under /v1, test hooks under /mock)."""
    cfg = cfg or MockConfig()
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[CONFIG] = cfg
    app[STATE] = MockState(cfg.record_last)
    app[FAULTS] = FaultInjector(cfg)
    app[STOPPING] = asyncio.Event()
    app[MODELS_BODY] = p.models_list(cfg.models)
    app.on_shutdown.append(_on_shutdown)
    add = app.router.add_route
    add("POST", "/v1/chat/completions", _endpoint("chat.completions", chat_completions))
    add("POST", "/v1/completions", _endpoint("completions", completions))
    add("POST", "/v1/embeddings", _endpoint("embeddings", embeddings, streams=False))
    add("POST", "/v1/responses", _endpoint("responses", responses))
    add("GET", "/v1/models", _endpoint("models", list_models, has_body=False, streams=False))
    add("GET", "/v1/models/{model:.+}", _endpoint("models", get_model, has_body=False, streams=False))
    add("GET", "/healthz", healthz)
    add("GET", "/mock/stats", stats)
    add("POST", "/mock/reset", reset)
    return app
