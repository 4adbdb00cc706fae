"""Running the mock: ``MockUpstream`` (start/stop, async context manager), ``serve`` and blocking ``run``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from aiohttp import web

from mock_upstream.app import STATE, create_app
from mock_upstream.config import DEFAULT_HOST, DEFAULT_PORT, MockConfig, config_from_args
from mock_upstream.state import MockState

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 5.0


class MockUpstream:
    """The mock upstream on ``host:port``; port 0 picks a free port (see ``port``, ``base_url``)."""

    def __init__(self, cfg: MockConfig | None = None, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.cfg = cfg or MockConfig()
        self.host = host
        self.port = port
        self.app = create_app(self.cfg)
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> MockState:
        return self.app[STATE]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop accepting, end hanging and paced requests, close. Idempotent, safe before start()."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockUpstream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


@asynccontextmanager
async def serve(
    cfg: MockConfig | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> AsyncIterator[MockUpstream]:
    """``async with serve(cfg, host, port) as mock:`` — the started mock, stopped on exit."""
    async with MockUpstream(cfg, host, port) as mock:
        yield mock


async def _serve_until_signal(cfg: MockConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(cfg, host, port) as mock:
        log.info("mock upstream listening on %s", mock.base_url)
        await stop.wait()
        log.info("mock upstream stopping")
    log.info("mock upstream stopped")


def run(cfg: MockConfig | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve until SIGINT/SIGTERM (blocking), on uvloop when it is installed."""
    main = _serve_until_signal(cfg or MockConfig(), host, port)
    try:
        import uvloop  # optional speed-up
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def run_from_args(args: argparse.Namespace) -> None:
    """``gatewatch mock-upstream``: arguments added by ``add_cli_arguments`` -> ``run``. An invalid
    configuration prints every error and exits with status 2."""
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"gatewatch mock-upstream: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(cfg, args.host, args.port)
