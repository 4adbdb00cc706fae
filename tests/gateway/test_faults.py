"""Upstream faults injected by the real mock: retries, fallback, circuit breaking, timeouts, disconnects."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest
from aiohttp import web

from mock_upstream import MockConfig, MockUpstream
from tests.gateway.conftest import Gateway, GatewayFactory, deployment

MSG = [{"role": "user", "content": "hello"}]


async def test_retry_then_success(gw: Gateway) -> None:
    r = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                  extra_headers={"x-mock-fault": "fail-times:2:503:k1"})
    assert r.choices[0].message.content
    [ev] = gw.emitter.events
    assert ev["attempts"] == 3 and ev["outcome"] == "completed"


async def test_stream_retry_before_first_byte(gw: Gateway) -> None:
    s = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                  extra_headers={"x-mock-fault": "fail-times:1:429:k2"})
    assert "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
    assert gw.emitter.events[0]["attempts"] == 2


async def test_fallback_to_next_deployment(make_gateway: GatewayFactory, mock: MockUpstream) -> None:
    async with MockUpstream(MockConfig(error_rate=1.0, error_status=503)) as bad:
        g = await make_gateway({"m": {"deployments": [deployment(bad, "primary", priority=0),
                                                      deployment(mock, "fallback", priority=1)]}})
        r = await g.client().chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content
        ev = g.emitter.events[0]
        assert ev["deployment"] == "fallback" and ev["attempts"] == 2
        assert bad.state.requests  # the primary was tried first


async def test_5xx_after_retries(gw: Gateway, mock: MockUpstream) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                  extra_headers={"x-mock-fault": "500"})
    assert exc.value.status_code == 502
    assert sum(mock.state.requests.values()) == 3  # max_attempts
    ev = gw.emitter.events[0]
    assert ev["status"] == 502 and ev["attempts"] == 3 and ev["outcome"] == "failed"


async def test_4xx_not_retried_and_passed_through(gw: Gateway, mock: MockUpstream) -> None:
    with pytest.raises(openai.BadRequestError):
        await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                  extra_headers={"x-mock-fault": "400"})
    assert sum(mock.state.requests.values()) == 1


async def test_429_after_retries_has_retry_after(gw: Gateway) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                  extra_headers={"x-mock-fault": "429"})
    assert exc.value.response.headers.get("retry-after")


async def test_first_byte_timeout(make_gateway: GatewayFactory, mock: MockUpstream) -> None:
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}},
                           routing={"timeouts": {"first_byte_s": 0.3, "connect_s": 1, "total_s": 5},
                                    "retry": {"max_attempts": 2, "backoff_base_s": 0.01}})
    with pytest.raises(openai.APIStatusError) as exc:
        await g.client().chat.completions.create(model="m", messages=MSG,
                                                 extra_headers={"x-mock-fault": "hang"})
    assert exc.value.status_code == 504
    assert g.emitter.events[0]["error_type"] == "upstream_timeout"


async def test_connect_error_is_502(make_gateway: GatewayFactory) -> None:
    g = await make_gateway({"m": {"deployments": [{"name": "dead", "base_url": "http://127.0.0.1:9/v1"}]}})
    with pytest.raises(openai.InternalServerError) as exc:
        await g.client().chat.completions.create(model="m", messages=MSG)
    assert exc.value.status_code == 502


async def test_circuit_breaker_opens(make_gateway: GatewayFactory, mock: MockUpstream) -> None:
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}},
                           routing={"circuit_breaker": {"failure_threshold": 2, "cooldown_s": 60},
                                    "retry": {"max_attempts": 1}})
    c = g.client()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="m", messages=MSG, extra_headers={"x-mock-fault": "500"})
    before = sum(mock.state.requests.values())
    with pytest.raises(openai.APIStatusError) as exc:
        await c.chat.completions.create(model="m", messages=MSG)
    assert exc.value.status_code == 503 and "circuit" in exc.value.message
    assert sum(mock.state.requests.values()) == before  # not sent upstream


async def test_mid_stream_disconnect_ends_with_error_event(gw: Gateway) -> None:
    s = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                  extra_headers={"x-mock-fault": "disconnect"})
    got = []
    with pytest.raises(openai.APIError) as exc:
        async for c in s:
            got.append(c)
    assert got, "chunks before the failure reach the client"
    assert "ended the stream early" in exc.value.message
    ev = gw.emitter.events[0]
    assert ev["error_type"] == "upstream_disconnected" and ev["outcome"] == "failed"


async def test_client_disconnect_cancels_upstream(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.post(gw.base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                         headers={"authorization": f"Bearer {gw.key}", "x-mock-fault": "hang"},
                         timeout=aiohttp.ClientTimeout(total=0.3))
    for _ in range(50):
        if gw.emitter.events:
            break
        await asyncio.sleep(0.05)
    [ev] = gw.emitter.events
    assert ev["error_type"] == "client_disconnected" and ev["status"] == 499


async def test_upstream_cookies_never_reach_other_requests(make_gateway: GatewayFactory) -> None:
    """One pooled session serves every tenant: a Set-Cookie from the upstream must not be replayed."""
    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": "ok"}}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        resp.set_cookie("session", "tenant-a-secret")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base = f"http://localhost:{runner.addresses[0][1]}/v1"  # a host name: jars ignore IP hosts
        gw = await make_gateway({"m": {"deployments": [{"name": "cookie", "base_url": base}]}})
        async with gw.client() as c:
            for _ in range(2):
                await c.chat.completions.create(model="m", messages=MSG)
        assert seen == [None, None]
    finally:
        await runner.cleanup()
