"""What a handler works with: the app-wide ``Shared`` context and the per-request ``Call``."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Generic, TypeVar

from aiohttp import web

from mock_upstream import payloads as p
from mock_upstream.config import MockConfig
from mock_upstream.faults import FaultInjector
from mock_upstream.sse import SSE_HEADERS, Pacing, send_events
from mock_upstream.state import MockState

JSON_HEADERS = {"Content-Type": "application/json"}
REPLY_CACHE_SIZE = 1024  # distinct request bodies whose replies are kept
MAX_CACHED_BODY = 16 * 1024  # larger bodies are never cached
V = TypeVar("V")


class ReplyCache(Generic[V]):
    """Replies are a pure function of (raw body, natural length): keep the last few (FIFO), so a benchmark
    repeating one request pays for generation and serialisation once."""

    __slots__ = ("_data", "_max")

    def __init__(self, maxsize: int) -> None:
        self._data: dict[tuple[bytes, int], V] = {}
        self._max = maxsize

    def get(self, key: tuple[bytes, int]) -> V | None:
        return self._data.get(key)

    def put(self, key: tuple[bytes, int], value: V) -> None:
        if len(key[0]) > MAX_CACHED_BODY:
            return
        if len(self._data) >= self._max:
            del self._data[next(iter(self._data))]
        self._data[key] = value


class Shared:
    """Everything handlers need, built once per app (handlers close over it: no app lookups per request)."""

    __slots__ = ("cfg", "chat_replies", "faults", "models_body", "pacing", "state", "stopping")

    def __init__(self, cfg: MockConfig) -> None:
        self.cfg = cfg
        self.state = MockState(cfg.record_last)
        self.faults = FaultInjector(cfg)
        self.stopping = asyncio.Event()
        self.models_body = p.models_list(cfg.models)
        self.chat_replies: ReplyCache[Any] = ReplyCache(REPLY_CACHE_SIZE)
        rate = cfg.tokens_per_s
        self.pacing = Pacing(cfg.ttft_ms / 1000, 1 / rate if rate > 0 else 0.0)


class Call:
    """One inference request that passed the prelude (recorded, no fault answered, latency waited)."""

    __slots__ = ("body", "disconnect", "natural_tokens", "raw", "request", "request_id", "shared")

    def __init__(
        self,
        shared: Shared,
        request: web.Request,
        raw: bytes,
        body: dict[str, Any],
        request_id: str | None,
        disconnect: bool,
        natural_tokens: int,
    ) -> None:
        self.shared = shared
        self.request = request
        self.raw = raw
        self.body = body
        self.request_id = request_id
        self.disconnect = disconnect
        self.natural_tokens = natural_tokens

    def json(self, body: bytes) -> web.Response:
        return web.Response(body=body, headers=with_id(JSON_HEADERS, self.request_id))

    async def stream(self, events: list[p.Event]) -> web.StreamResponse:
        headers = with_id(SSE_HEADERS, self.request_id)
        shared = self.shared
        return await send_events(
            self.request, events, headers, shared.pacing, disconnect=self.disconnect, stopping=shared.stopping
        )

    async def generation_time(self, tokens: int) -> None:
        """Non-streamed replies take as long as the stream would have (ttft + tokens / rate)."""
        pace = self.shared.pacing
        if pace.active:
            await asyncio.sleep(pace.ttft_s + tokens * pace.token_interval_s)


def with_id(headers: dict[str, str], request_id: str | None) -> dict[str, str]:
    return {**headers, "x-request-id": request_id} if request_id else headers


def error_response(
    status: int,
    message: str,
    request_id: str | None,
    *,
    code: str | None = None,
    param: str | None = None,
    extra: dict[str, str] | None = None,
) -> web.Response:
    headers = with_id(JSON_HEADERS, request_id)
    if extra:
        headers = {**headers, **extra}
    return web.Response(status=status, body=p.error_body(message, status, code, param), headers=headers)


def fault_response(status: int, cfg: MockConfig, request_id: str | None) -> web.Response:
    """An injected error; 429 carries ``Retry-After`` (whole seconds) and ``retry-after-ms``."""
    extra = None
    if status == 429:
        seconds = cfg.retry_after_s
        extra = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}
    message = f"mock upstream injected HTTP {status}"
    return error_response(status, message, request_id, code=None if status == 429 else "mock_fault", extra=extra)
