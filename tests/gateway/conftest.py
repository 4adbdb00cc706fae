"""Fixtures: a real mock upstream (HTTP server) and a real gateway (HTTP server) on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from gatewatch.config import Settings
from gateway.app import create_app
from gateway.auth.keys import create_key
from mock_upstream import MockConfig, MockUpstream
from schemas.events import Event


@dataclass
class RecordingEmitter:
    """A fake (not a mock) emitter: keeps every event, validated against the schema."""

    events: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True

    def status(self) -> dict[str, Any]:
        return {"mode": "recording"}

    def send(self, key: str, payload: bytes) -> None:
        event = orjson.loads(payload)
        Event.model_validate(event)
        assert event["tenant"] == key
        self.events.append(event)


@dataclass
class Gateway:
    url: str
    key: str
    emitter: Any
    settings: Settings
    runner: web.AppRunner

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, key: str | None = None, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key or self.key, max_retries=0, **kw)


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(MockConfig()) as m:
        yield m


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    runners: list[web.AppRunner] = []

    async def factory(models: dict[str, Any], *, emitter: Any = None, tenant: str = "acme",
                      real_kafka: bool = False, **overrides: Any) -> Gateway:
        raw: dict[str, Any] = {"home": str(tmp_path / "home"), "models": models,
                               "routing": {"retry": {"backoff_base_s": 0.01, "backoff_max_s": 0.05}}}
        for k, v in overrides.items():
            raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
        settings = Settings.model_validate(raw)
        secret, _ = create_key(settings.keys_file, tenant)
        if real_kafka:
            from gatewatch.runtime import make_emitter

            emitter = make_emitter(settings)
        em = emitter or RecordingEmitter()
        app = create_app(settings, em, forward_headers=("x-mock-*",))
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Gateway(f"http://127.0.0.1:{port}", secret, em, settings, runner)

    yield factory
    for r in runners:
        await r.cleanup()


def deployment(mock: MockUpstream, name: str = "mock", **kw: Any) -> dict[str, Any]:
    return {"name": name, "base_url": mock.base_url, **kw}


@pytest.fixture
async def gw(make_gateway: GatewayFactory, mock: MockUpstream) -> Gateway:
    return await make_gateway({"gpt-4o-mini": {"deployments": [deployment(mock)],
                                               "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}}})
