"""Provider adapters against a real local HTTP server: Azure OpenAI gets `api-key` (never Bearer), the
deployment in the path and `api-version` in the query; an OpenAI-compatible upstream keeps Bearer and
`{base_url}{path}`. Plus the config errors a provider raises at validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web
from pydantic import ValidationError

from gatewatch.config import Settings
from gateway.endpoints import ENDPOINTS, Endpoint
from gateway.providers import PROVIDERS, Provider, provider_for
from tests.gateway.conftest import GatewayFactory

AZURE_KEY = "az-upstream-secret"
API_VERSION = "2024-10-21"
MSG = [{"role": "user", "content": "hello"}]
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@dataclass
class Seen:
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)


def _answer(path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path.endswith("/embeddings"):
        return {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]}
    if path.endswith("/responses"):
        return {"id": "resp_1", "object": "response", "model": body["model"], "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "hi there"}]}],
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"], "usage": USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"},
                         "finish_reason": "stop"}]}


async def _stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    chunks = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]},
              {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {**head, "choices": [], "usage": USAGE}]
    for c in chunks:
        await resp.write(b"data: " + web.json_response(c).body + b"\n\n")  # type: ignore[operator]
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """Records every request (path, query, headers, body) and answers like an OpenAI-style server."""
    up = Upstream("")

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        up.seen.append(Seen(request.path, request.raw_path, dict(request.query), headers, body))
        if body.get("stream"):
            return await _stream(request, body)
        return web.json_response(_answer(request.path, body))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield up
    await runner.cleanup()


def _azure(upstream: Upstream, **kw: Any) -> dict[str, Any]:
    return {"name": "az", "base_url": upstream.url, "provider": "azure_openai", "api_version": API_VERSION,
            "api_key_env": "AZ_TEST_KEY", **kw}


async def test_azure_chat_sends_api_key_and_the_deployment_url(make_gateway: GatewayFactory, upstream: Upstream,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZ_TEST_KEY", AZURE_KEY)
    g = await make_gateway({"gpt-4o": {"deployments": [_azure(upstream, model="gpt4o-prod")]}})
    r = await g.client().chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.choices[0].message.content == "hi there"
    [seen] = upstream.seen
    assert seen.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert seen.query == {"api-version": API_VERSION}
    assert seen.headers["api-key"] == AZURE_KEY and "authorization" not in seen.headers
    assert seen.body["model"] == "gpt4o-prod"
    [ev] = g.emitter.events
    assert ev["provider"] == "azure_openai" and ev["deployment"] == "az" and ev["usage"]["total_tokens"] == 5


async def test_azure_stream_embeddings_and_responses(make_gateway: GatewayFactory, upstream: Upstream,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every endpoint takes the Azure shape: chat/completions/embeddings under the deployment, Responses
    at /openai/responses (not deployment-scoped, as the openai SDK's AzureOpenAI client does it); a trailing
    /openai on base_url is accepted."""
    monkeypatch.setenv("AZ_TEST_KEY", AZURE_KEY)
    g = await make_gateway({"m": {"deployments": [_azure(upstream, base_url=upstream.url + "/openai/",
                                                         model="dep-1")]}})
    c = g.client()
    s = await c.chat.completions.create(model="m", messages=MSG, stream=True)
    assert "".join([x.choices[0].delta.content or "" async for x in s if x.choices]) == "hi"
    await c.embeddings.create(model="m", input="hello")
    await c.responses.create(model="m", input="hello")
    paths = [s.path for s in upstream.seen]
    assert paths == ["/openai/deployments/dep-1/chat/completions", "/openai/deployments/dep-1/embeddings",
                     "/openai/responses"]
    assert all(s.query == {"api-version": API_VERSION} and s.headers["api-key"] == AZURE_KEY
               and "authorization" not in s.headers for s in upstream.seen)
    assert upstream.seen[2].body["model"] == "dep-1"


async def test_azure_catch_all_quotes_the_client_model_into_the_path(make_gateway: GatewayFactory,
                                                                     upstream: Upstream) -> None:
    g = await make_gateway({"*": {"deployments": [_azure(upstream, api_key_env=None)]}})
    await g.client().chat.completions.create(model="my dep/../x?y", messages=MSG)
    [seen] = upstream.seen
    assert seen.raw_path == f"/openai/deployments/my%20dep%2F..%2Fx%3Fy/chat/completions?api-version={API_VERSION}"
    assert seen.query == {"api-version": API_VERSION}  # one path segment: nothing escaped into path or query
    assert "api-key" not in seen.headers and "authorization" not in seen.headers  # no key configured


async def test_openai_compatible_keeps_bearer_and_base_url(make_gateway: GatewayFactory, upstream: Upstream,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_TEST_KEY", "vllm-secret")
    g = await make_gateway({"m": {"deployments": [{"name": "v", "base_url": upstream.url + "/v1/",
                                                   "provider": "vllm", "api_key_env": "VLLM_TEST_KEY",
                                                   "headers": {"x-extra": "1"}}]}})
    await g.client().chat.completions.create(model="m", messages=MSG)
    [seen] = upstream.seen
    assert seen.path == "/v1/chat/completions" and seen.query == {}
    assert seen.headers["authorization"] == "Bearer vllm-secret" and "api-key" not in seen.headers
    assert seen.headers["x-extra"] == "1"
    assert g.emitter.events[0]["provider"] == "vllm"  # a provider without an adapter is only a label


def _settings(dep: dict[str, Any]) -> Settings:
    return Settings.model_validate({"models": {"m": {"deployments": [dep]}}})


def test_azure_without_api_version_is_a_config_error() -> None:
    with pytest.raises(ValidationError) as info:
        _settings({"name": "az", "base_url": "https://res.openai.azure.com", "provider": "azure_openai"})
    [err] = info.value.errors()
    assert err["loc"] == ("models", "m", "deployments", 0)
    assert "provider azure_openai needs api_version" in err["msg"]


def test_api_version_on_another_provider_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="api_version applies to provider azure_openai only"):
        _settings({"name": "o", "base_url": "https://api.openai.com/v1", "api_version": API_VERSION})


def _members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")} | set(proto.__annotations__)


def test_registries() -> None:
    for adapter in [*ENDPOINTS.values(), *PROVIDERS.values()]:  # every adapter implements its whole Protocol
        proto = Endpoint if adapter in ENDPOINTS.values() else Provider
        assert all(hasattr(adapter, m) for m in _members(proto)), (adapter, _members(proto))
    assert provider_for("azure_openai") is PROVIDERS["azure_openai"]
    assert provider_for("gatewatch-mock") is PROVIDERS["openai"]  # unknown kinds are OpenAI-compatible
    assert {e.path for e in ENDPOINTS.values()} == {"/chat/completions", "/completions", "/embeddings",
                                                     "/responses"}


async def test_unknown_client_sdk_path_is_not_routed(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """Only the adapters' paths are routes: anything else is the gateway's 404, never forwarded."""
    g = await make_gateway({"m": {"deployments": [{"name": "v", "base_url": upstream.url}]}})
    with pytest.raises(openai.NotFoundError):
        await g.client().post("/messages", cast_to=dict, body={"model": "m"})
    assert upstream.seen == []
