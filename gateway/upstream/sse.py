"""SSE parsing at line boundaries with a carry-over buffer (aiohttp's StreamReader does the carrying)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from gateway.exchange import SSEEvent


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Yield one SSEEvent per blank-line-terminated event. Comments (``:``) and ids are ignored."""
    data: list[bytes] = []
    event: str | None = None
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield SSEEvent(data=b"\n".join(data), event=event)
            data = []
            event = None
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
        # `id:`, `retry:` and `:` comments carry nothing we forward
    if data:  # stream ended without the final blank line
        yield SSEEvent(data=b"\n".join(data), event=event)
