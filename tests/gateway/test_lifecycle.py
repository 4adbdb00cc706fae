"""Graceful shutdown, readiness and metrics of a gateway run the way `gatewatch gateway` runs it."""

from __future__ import annotations

import asyncio

import aiohttp
import openai

from gatewatch.config import Settings
from gatewatch.procs import free_port
from gatewatch.runtime import serve_gateway
from gateway.auth.keys import create_key
from mock_upstream import MockConfig, MockUpstream
from tests.gateway.conftest import RecordingEmitter


async def test_shutdown_lets_streams_finish_and_flushes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with MockUpstream(MockConfig(tokens_per_s=40, completion_tokens=40)) as mock:  # ~1 s per stream
        port = free_port()
        settings = Settings.model_validate({
            "home": str(tmp_path), "gateway": {"port": port, "shutdown_grace_s": 10},
            "models": {"m": {"deployments": [{"name": "mock", "base_url": mock.base_url}]}}})
        key, _ = create_key(settings.keys_file, "acme")
        emitter = RecordingEmitter()
        stop = asyncio.Event()
        ready = asyncio.Event()
        server = asyncio.create_task(serve_gateway(settings, stop, emitter=emitter, on_ready=ready.set))
        await ready.wait()
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "gatewatch_requests_in_flight" in await r.text()

        async def consume() -> str:
            stream = await client.chat.completions.create(model="m", stream=True,
                                                          messages=[{"role": "user", "content": "long one"}])
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        streaming = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # the stream is under way
        stop.set()  # SIGTERM
        text = await asyncio.wait_for(streaming, 15)
        await asyncio.wait_for(server, 15)
        assert len(text.split()) > 10  # the in-flight stream finished
        assert emitter.stopped  # events flushed on the way out
        assert [e["outcome"] for e in emitter.events] == ["completed"]
        try:  # the listener is gone
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            raise AssertionError("gateway still accepting")
        except openai.APIConnectionError:
            pass
