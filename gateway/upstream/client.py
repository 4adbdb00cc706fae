"""One attempt against one deployment: the HTTP call, error classification, and the streamed relay."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.endpoints import Endpoint
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.exchange import DONE, Exchange, Reply, SSEEvent
from gateway.metrics import STREAM_ERRORS
from gateway.upstream.sse import iter_sse
from gateway.upstream.target import Target

MAX_ERROR_BODY = 64 * 1024
_ENDED_EARLY = "The upstream model server ended the stream early."


class AttemptFailed(Exception):
    def __init__(self, kind: str, message: str, *, retriable: bool, status: int | None = None,
                 body: Any = None, retry_after: float | None = None, counts: bool = True,
                 error: GatewayError | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retriable = retriable
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.counts_against_deployment = counts
        self.error = error


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _status_failure(resp: aiohttp.ClientResponse, retry_on: list[int]) -> AttemptFailed:
    raw = await resp.content.read(MAX_ERROR_BODY)
    resp.release()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    msg = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = str(body["error"].get("message", ""))
    msg = msg or raw[:200].decode("utf-8", "replace") or resp.reason or ""
    status = resp.status
    if status in (401, 403):
        return AttemptFailed("status", f"upstream rejected the gateway's credentials ({status})",
                             retriable=True, status=status,
                             error=UpstreamError(f"Upstream rejected the gateway's credentials ({status})."))
    retriable = status in retry_on or status >= 500
    return AttemptFailed("status", f"upstream answered {status}: {msg}", retriable=retriable, status=status,
                         body=body if isinstance(body, dict) else {"error": {"message": msg}},
                         retry_after=_retry_after(resp), counts=retriable)


def _deadline(ex: Exchange, target: Target) -> float:
    loop = asyncio.get_running_loop()
    elapsed = time.perf_counter() - ex.t0
    return loop.time() + max(0.0, target.timeouts.total_s - elapsed)


async def send_once(session: aiohttp.ClientSession, target: Target, ex: Exchange, api: Endpoint,
                    body: dict[str, Any], extra_headers: dict[str, str], retry_on: list[int]) -> Reply:
    """One attempt: ``body`` (already the upstream's, with its model) to where the provider says."""
    t = target.timeouts
    deadline = _deadline(ex, target)
    headers = {**target.headers, **extra_headers, "x-request-id": ex.request_id}
    url = target.url_for(api.path, body["model"])
    timeout = aiohttp.ClientTimeout(total=None, connect=t.connect_s, sock_connect=t.connect_s)
    first_byte_at = min(deadline, asyncio.get_running_loop().time() + t.first_byte_s)
    try:
        async with asyncio.timeout_at(first_byte_at):
            resp = await session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout)
            if resp.status >= 400:
                raise await _status_failure(resp, retry_on)
            if not ex.stream:
                ex.mark_first_token()
                async with asyncio.timeout_at(deadline):
                    raw = await resp.read()
                return _non_stream_reply(ex, api, resp, raw)
            events = iter_sse(resp.content).__aiter__()
            try:
                first = await anext(events)
            except StopAsyncIteration:
                resp.close()
                raise AttemptFailed("disconnect", "upstream closed the stream before the first event",
                                    retriable=True) from None
    except AttemptFailed:
        raise
    except TimeoutError:
        raise AttemptFailed("timeout", "upstream did not answer in time", retriable=True,
                            error=UpstreamTimeout("The upstream model server did not answer in time.")) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
        raise AttemptFailed("connect", f"upstream connection failed: {type(exc).__name__}", retriable=True,
                            error=UpstreamError(f"Could not reach the upstream model server "
                                                f"({type(exc).__name__}).")) from None
    return Reply(status=200, headers={}, chunks=relay(ex, api, resp, events, first, deadline))


def _non_stream_reply(ex: Exchange, api: Endpoint, resp: aiohttp.ClientResponse, raw: bytes) -> Reply:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AttemptFailed("status", "upstream answered with invalid JSON", retriable=True,
                            error=UpstreamError("The upstream model server answered with invalid JSON.")) from None
    if isinstance(obj, dict):
        api.read_body(ex, obj)
    return Reply(status=resp.status, headers={}, body=obj if isinstance(obj, dict) else None, raw_body=raw)


async def relay(ex: Exchange, api: Endpoint, resp: aiohttp.ClientResponse, events: AsyncIterator[SSEEvent],
                first: SSEEvent, deadline: float) -> AsyncIterator[SSEEvent]:
    """Pass upstream events through one by one, recording usage/text; end with an error event on failure."""
    finished = False
    strip_usage = api.injects_usage and not ex.client_wants_usage  # the usage chunk only we asked for
    ev: SSEEvent | None = first
    try:
        while ev is not None:
            if ev.data == DONE:
                finished = True
                yield ev
                break
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                ev.obj = obj
                api.read_event(ex, obj, ev.event)
                if ex.response_parts:
                    ex.mark_first_token()
                if api.is_error_chunk(obj):
                    ex.error_type = "upstream_stream_error"
                if api.is_terminal(ev, obj):
                    finished = True
                if not (strip_usage and api.is_usage_chunk(obj)):
                    yield ev
            else:
                yield ev
            try:
                async with asyncio.timeout_at(deadline):
                    ev = await anext(events)
            except StopAsyncIteration:
                ev = None
        if not finished:
            ex.error_type = "upstream_disconnected"
            STREAM_ERRORS.labels("upstream_disconnected").inc()
            yield api.error_event(_ENDED_EARLY, "upstream_disconnected", "upstream_error")
    except TimeoutError:
        ex.error_type = "upstream_timeout"
        STREAM_ERRORS.labels("upstream_timeout").inc()
        yield api.error_event("The upstream model server did not finish in time.", "upstream_timeout", "upstream_error")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
        ex.error_type = "upstream_disconnected"
        STREAM_ERRORS.labels("upstream_disconnected").inc()
        yield api.error_event(_ENDED_EARLY, "upstream_disconnected", "upstream_error")
    finally:
        if finished:
            resp.release()
        else:
            with contextlib.suppress(Exception):
                resp.close()  # aborts the upstream request (client went away or upstream failed)
