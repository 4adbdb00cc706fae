"""The official openai SDK against the gateway (real HTTP servers on both sides)."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import Gateway

MSG = [{"role": "user", "content": "Say something about gateways."}]


async def test_chat_non_stream(gw: Gateway) -> None:
    r = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=12)
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    [ev] = gw.emitter.events
    assert ev["outcome"] == "completed" and ev["status"] == 200 and not ev["stream"]
    assert ev["usage"]["input_tokens"] == r.usage.prompt_tokens
    assert ev["usage"]["output_tokens"] == r.usage.completion_tokens
    assert ev["response"]["text"] == r.choices[0].message.content
    assert ev["request"]["messages"] == [{"role": "user", "content": MSG[0]["content"]}]
    expected_cost = (r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6
    assert ev["cost_usd"] == pytest.approx(expected_cost)
    assert ev["tenant"] == "acme" and ev["key_id"].startswith("key_")
    assert ev["request_model"] == "gpt-4o-mini" and ev["deployment"] == "mock"


async def test_chat_stream_strips_injected_usage(gw: Gateway) -> None:
    stream = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.choices for c in chunks), "the usage-only chunk the gateway injected must not reach the client"
    [ev] = gw.emitter.events
    assert ev["stream"] and ev["outcome"] == "completed"
    assert ev["response"]["text"] == text
    assert ev["usage"]["output_tokens"] and ev["ttft_ms"] is not None
    assert ev["ttft_ms"] <= ev["latency_ms"]


async def test_chat_stream_with_client_usage(gw: Gateway) -> None:
    stream = await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                       stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert gw.emitter.events[0]["usage"]["output_tokens"] == chunks[-1].usage.completion_tokens


async def test_completions(gw: Gateway) -> None:
    c = gw.client()
    r = await c.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=8)
    assert r.choices[0].text and r.usage and r.usage.completion_tokens <= 8
    s = await c.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=8, stream=True)
    text = "".join([ch.choices[0].text async for ch in s if ch.choices])
    assert text == r.choices[0].text  # deterministic mock
    assert [e["endpoint"] for e in gw.emitter.events] == ["completions", "completions"]
    assert gw.emitter.events[1]["usage"]["output_tokens"] == r.usage.completion_tokens


async def test_embeddings(gw: Gateway) -> None:
    r = await gw.client().embeddings.create(model="gpt-4o-mini", input=["alpha", "beta"])
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0
    [ev] = gw.emitter.events
    assert ev["endpoint"] == "embeddings" and ev["operation"] == "embeddings"
    assert [m["content"] for m in ev["request"]["messages"]] == ["alpha", "beta"]


async def test_responses(gw: Gateway) -> None:
    c = gw.client()
    r = await c.responses.create(model="gpt-4o-mini", input="Tell me a story", instructions="Be brief")
    assert r.output_text and r.usage and r.usage.output_tokens > 0
    async with c.responses.stream(model="gpt-4o-mini", input="Tell me a story", instructions="Be brief") as s:
        async for _ in s:
            pass
        final = await s.get_final_response()
    assert final.output_text == r.output_text
    e1, e2 = gw.emitter.events
    assert e1["response"]["text"] == r.output_text and e2["response"]["text"] == r.output_text
    assert e2["stream"] and e2["usage"]["output_tokens"] == r.usage.output_tokens
    assert e1["request"]["messages"][0] == {"role": "system", "content": "Be brief"}


async def test_models(make_gateway, mock) -> None:  # type: ignore[no-untyped-def]
    dep = {"name": "m", "base_url": mock.base_url}
    g = await make_gateway({"a": {"deployments": [dep]}, "b": {"deployments": [dep]}})
    models = await g.client().models.list()
    assert sorted(m.id for m in models.data) == ["a", "b"]
    assert (await g.client().models.retrieve("a")).id == "a"
    with pytest.raises(openai.NotFoundError):
        await g.client().models.retrieve("zzz")


async def test_error_shapes(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await gw.client().chat.completions.create(model="no-such-model", messages=MSG)
    assert nf.value.code == "model_not_found" and nf.value.param == "model"
    with pytest.raises(openai.AuthenticationError) as au:
        await gw.client(key="gw-wrong").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert au.value.status_code == 401 and au.value.type == "authentication_error"
    with pytest.raises(openai.BadRequestError) as br:
        await gw.client().chat.completions.create(model="gpt-4o-mini", messages=[])
    assert br.value.param == "messages"
    with pytest.raises(openai.InternalServerError) as ise:
        await gw.client().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                   extra_headers={"x-mock-fault": "500"})
    assert ise.value.status_code == 502
    assert all(e.response.headers.get("x-request-id") for e in (nf.value, au.value, br.value, ise.value))
    outcomes = [(e["status"], e["outcome"]) for e in gw.emitter.events]
    assert outcomes == [(404, "failed"), (401, "denied"), (400, "failed"), (502, "failed")]


async def test_request_id_propagates(gw: Gateway, mock) -> None:  # type: ignore[no-untyped-def]
    raw = await gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, extra_headers={"x-request-id": "req-abc-123"})
    assert raw.headers["x-request-id"] == "req-abc-123"
    sent = {k.lower(): v for k, v in mock.state.snapshot(1)["recent"][-1]["headers"].items()}
    assert sent["x-request-id"] == "req-abc-123"
    assert gw.emitter.events[0]["request_id"] == "req-abc-123"


async def test_extension_field_stripped(gw: Gateway, mock) -> None:  # type: ignore[no-untyped-def]
    await gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=MSG, user="end-user-7",
        extra_body={"gatewatch": {"context": ["Doc one.", "Doc two."], "metadata": {"purpose": "support"}}})
    forwarded = mock.state.snapshot(1)["recent"][-1]["body"]
    assert "gatewatch" not in forwarded
    ev = gw.emitter.events[0]
    assert [d["content"] for d in ev["request"]["context"]] == ["Doc one.", "Doc two."]
    assert ev["metadata"] == {"purpose": "support"} and ev["end_user"] == "end-user-7"
