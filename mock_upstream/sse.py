"""Delivering SSE streams (paced or in one write), dropped connections and hangs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from mock_upstream.payloads import Event

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DISCONNECT_AFTER = 2  # events sent before a "disconnect" fault drops the connection
_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Pacing:
    ttft_s: float = 0.0  # before the first token event
    token_interval_s: float = 0.0  # between token events

    @property
    def active(self) -> bool:
        return self.ttft_s > 0 or self.token_interval_s > 0


def drop_connection(request: web.BaseRequest) -> web.StreamResponse:
    """Close the TCP connection (buffered bytes are flushed first) and return a response that aiohttp
    will fail to write — it treats that as a client disconnect and logs nothing."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


async def hang(request: web.BaseRequest, stopping: asyncio.Event) -> web.StreamResponse:
    """Never answer: wait until the client goes away or the server shuts down, then drop the connection."""
    while not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_POLL_S):
                await stopping.wait()
    return drop_connection(request)


async def send_events(
    request: web.Request,
    events: Sequence[Event],
    headers: Mapping[str, str],
    pacing: Pacing,
    *,
    disconnect: bool,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    """Stream ``events``. Unpaced streams go out as one body; a disconnect fault sends
    ``DISCONNECT_AFTER`` events (chunked) and then drops the connection."""
    if not (pacing.active or disconnect):
        return web.Response(body=b"".join(e[0] for e in events), headers=headers)
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    try:
        complete = await _paced(resp, events[:DISCONNECT_AFTER] if disconnect else events, pacing, stopping)
    except ConnectionError:  # the client left mid-stream: nothing to finish, nothing to log
        return resp
    if disconnect or not complete:
        drop_connection(request)
    return resp


async def _paced(resp: web.StreamResponse, events: Sequence[Event], pacing: Pacing, stopping: asyncio.Event) -> bool:
    """Write events, waiting ttft before the first token and one interval between tokens; returns
    False when the server began shutting down before the end."""
    loop = asyncio.get_running_loop()
    due: float | None = None
    pending: list[bytes] = []
    for data, is_token in events:
        if is_token:
            now = loop.time()
            due = now + pacing.ttft_s if due is None else due + pacing.token_interval_s
            if due > now:
                if pending:
                    await resp.write(b"".join(pending))
                    pending.clear()
                await asyncio.sleep(due - now)
                if stopping.is_set():
                    return False
        pending.append(data)
    if pending:
        await resp.write(b"".join(pending))
    return True
