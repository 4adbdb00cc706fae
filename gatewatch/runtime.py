"""Run the gateway process: event loop (uvloop), aiohttp runner with graceful shutdown, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gatewatch.config import Settings
from gateway.app import Emitter, create_app
from gateway.events import EventEmitter

log = logging.getLogger(__name__)


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _Payload:
    """An already-serialised event: what EventEmitter.emit needs (tenant + to_json) without a pydantic copy."""

    __slots__ = ("_payload", "tenant")

    def __init__(self, tenant: str, payload: bytes) -> None:
        self.tenant = tenant
        self._payload = payload

    def to_json(self) -> bytes:
        return self._payload


class KafkaSink:
    """Adapts the Kafka EventEmitter to the gateway's EventSink (send pre-serialised events)."""

    def __init__(self, emitter: EventEmitter) -> None:
        self.emitter = emitter

    async def start(self) -> None:
        await self.emitter.start()

    async def stop(self, timeout: float = 10.0) -> None:
        await self.emitter.stop(timeout)

    def send(self, key: str, payload: bytes) -> None:
        self.emitter.emit(_Payload(key, payload))  # type: ignore[arg-type]

    def status(self) -> dict[str, object]:
        return {"spooling": self.emitter.spooling, "queue_depth": self.emitter.queue_depth}


def make_emitter(settings: Settings) -> KafkaSink:
    spool_dir = Path(settings.home) / "spool"
    return KafkaSink(EventEmitter(settings.kafka, settings.gateway.emitter, spool_dir))


async def serve_gateway(settings: Settings, stop: asyncio.Event, *, emitter: Emitter | None = None,
                        on_ready: Callable[[], Awaitable[None] | None] | None = None,
                        forward_headers: tuple[str, ...] = (), reuse_port: bool = False) -> None:
    gw = settings.gateway
    app = create_app(settings, emitter or make_emitter(settings), forward_headers=forward_headers)
    # handler_cancellation: a client that disconnects cancels its handler, which cancels the upstream call
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=gw.shutdown_grace_s,
                           access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, gw.host, gw.port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        # everything allocated so far (modules, config, engines) lives for the whole process: keep it out
        # of the cyclic GC's generations so collections stay short on the request path
        gc.collect()
        gc.freeze()
        # a request allocates a few thousand short-lived objects: with the default gen-0 threshold (700)
        # the cyclic GC runs several times per request; almost nothing here is cyclic garbage
        gc.set_threshold(20_000, 50, 100)
        if on_ready is not None:
            res = on_ready()
            if asyncio.iscoroutine(res):
                await res
        await stop.wait()
        log.info("stopping: draining in-flight requests (up to %.0fs)", gw.shutdown_grace_s)
    finally:
        await runner.cleanup()


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
