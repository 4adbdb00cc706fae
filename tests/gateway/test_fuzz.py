"""Fuzzing the gateway with bodies generated from the OpenAI OpenAPI document (schemathesis on hypothesis):
valid bodies (positive) and bodies that break the schema (negative), authenticated, on every proxied
route. Whatever arrives, the gateway answers without a 5xx of its own, every error is an OpenAI error
object, and every request has exactly one event. Fixed seed and a small budget, so CI is repeatable.

The gateway and the mock upstream run in a thread with their own event loop: schemathesis calls are
synchronous (requests)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode

from gatewatch.config import Settings
from gateway.app import create_app
from gateway.auth.keys import create_key
from mock_upstream import MockConfig, MockUpstream

from .conftest import RecordingEmitter

pytestmark = pytest.mark.timeout(300)
SPEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "openai-openapi.yaml"
ROUTES = ["/chat/completions", "/completions", "/embeddings", "/responses"]
EXAMPLES = int(os.environ.get("GATEWATCH_FUZZ_EXAMPLES", "25"))  # per route and mode


class BackgroundGateway:
    """A real gateway (RecordingEmitter) and mock upstream served from a thread's own event loop."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.emitter = RecordingEmitter()
        self.url = ""
        self.key = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-gateway", daemon=True)

    def __enter__(self) -> BackgroundGateway:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from aiohttp import web

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with MockUpstream(MockConfig()) as mock:
            settings = Settings.model_validate({
                "home": str(self.home),
                "models": {"*": {"deployments": [{"name": "mock", "base_url": mock.base_url}]}},
                "routing": {"retry": {"max_attempts": 1}}})
            self.key, _ = create_key(settings.keys_file, "fuzz")
            runner = web.AppRunner(create_app(settings, self.emitter), handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()


@pytest.fixture(scope="module")
def schema() -> Any:
    return schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundGateway]:
    with BackgroundGateway(tmp_path_factory.mktemp("fuzz") / "home") as g:
        yield g


def _header(resp: Any, name: str) -> str:
    """schemathesis' Response keeps each header as a list of values."""
    for k, v in resp.headers.items():
        if k.lower() == name:
            return str(v[0] if isinstance(v, list) else v)
    return ""


def _check(g: BackgroundGateway, resp: Any, rid: str) -> None:
    status = resp.status_code
    ctype = _header(resp, "content-type")
    if status >= 400:
        assert ctype.startswith("application/json"), (status, resp.text[:300])
        err = resp.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and "type" in err and "code" in err
    # the gateway's own failures are the defect; an upstream's refusal of a strange body is passed on as
    # the upstream's 4xx, and the mock accepts every body it is sent
    assert status < 500, (status, resp.text[:500])
    assert _header(resp, "x-request-id") == rid
    events = [e for e in g.emitter.events if e["request_id"] == rid]
    for _ in range(100):  # the event follows the last byte
        if events:
            break
        threading.Event().wait(0.02)
        events = [e for e in g.emitter.events if e["request_id"] == rid]
    assert len(events) == 1, f"{len(events)} events for request {rid} (status {status})"
    assert events[0]["status"] == status


_ids = itertools.count()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("route", ROUTES)
def test_generated_bodies_never_5xx_and_always_audited(schema: Any, gateway: BackgroundGateway, route: str,
                                                        mode: GenerationMode) -> None:
    op = schema[route]["POST"]
    session = requests.Session()
    seen: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # no shrinking: the first failure, reported fast
    @seed(20261203)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        rid = f"fuzz-{next(_ids)}"
        resp = case.call(base_url=gateway.url + "/v1", session=session, timeout=30,
                         headers={"Authorization": f"Bearer {gateway.key}", "x-request-id": rid})
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        _check(gateway, resp, rid)

    run()
    assert sum(seen.values()) >= 1
    if mode is GenerationMode.POSITIVE and route != "/responses":
        # valid bodies must mostly get through (the spec allows e.g. empty model names, which are 400s)
        assert any(200 <= s < 300 for s in seen), seen
