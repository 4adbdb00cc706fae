"""Run the gateway process: event loop (uvloop), aiohttp runner with graceful shutdown, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gatewatch.config import Settings
from gateway.app import Emitter, create_app

log = logging.getLogger(__name__)


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def make_emitter(settings: Settings) -> Emitter:
    from gateway.events import make_emitter as _make

    spool_dir = Path(settings.home) / "spool"
    return _make(settings.kafka, settings.gateway.emitter, spool_dir)


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
