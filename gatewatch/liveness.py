"""Liveness probes for `gatewatch up`'s children: a port that accepts connections is not a process that
answers (a SIGSTOPped or wedged broker still completes the TCP handshake in the kernel), so the
supervisor asks the question the clients ask.

``kafka_answers`` sends one Kafka ``ApiVersions`` v0 request (the first request every Kafka client
sends, so every broker answers it) and waits for a response frame with the same correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

_API_VERSIONS = 18
_CORRELATION = 0x6757  # "gW"
# size | api_key | api_version | correlation_id | client_id (nullable string: -1 = null)
_REQUEST = struct.pack(">ihhih", 10, _API_VERSIONS, 0, _CORRELATION, -1)


async def kafka_answers(host: str, port: int, timeout: float) -> bool:
    """True when the broker at host:port answers an ApiVersions request within ``timeout`` seconds."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_REQUEST)
            await writer.drain()
            size, correlation = struct.unpack(">ii", await reader.readexactly(8))
            return correlation == _CORRELATION and size >= 4
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
