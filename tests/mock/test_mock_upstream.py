"""The mock upstream through the official openai SDK (and raw aiohttp where headers or broken streams matter)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from multidict import CIMultiDict

from mock_upstream import (
    MockConfig,
    MockUpstream,
    add_cli_arguments,
    config_from_args,
    count_tokens,
)

pytestmark = pytest.mark.timeout(15)
MSGS = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Hello, world! How are you?"}]},
]
PROMPT_TOKENS = count_tokens("You are terse.") + count_tokens("Hello, world! How are you?")


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(MockConfig()) as m:
        yield m


@pytest.fixture
def client(mock: MockUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.base_url, api_key="test", max_retries=0, timeout=5)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def post(
    http: aiohttp.ClientSession, mock: MockUpstream, path: str, body: Any, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    async with http.post(mock.base_url + path, data=data, headers=hdrs) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


CHAT = {"model": "gpt-4o-mini", "messages": MSGS}


# --- chat completions ----------------------------------------------------------------------------


async def test_chat_non_stream_usage_matches_tokenizer(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content and choice.message.content.endswith(".")
    assert r.usage is not None
    assert r.usage.prompt_tokens == PROMPT_TOKENS
    assert r.usage.completion_tokens == count_tokens(choice.message.content) == 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


async def test_chat_stream_matches_non_stream_and_reports_usage(client: openai.AsyncOpenAI) -> None:
    full = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage == full.usage
    assert all(c.usage is None for c in chunks[:-1])


async def test_chat_stream_without_include_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)  # type: ignore[arg-type]
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_chat_limit_cuts_with_length(client: openai.AsyncOpenAI, field: str) -> None:
    r = await client.chat.completions.create(model="m", messages=MSGS, **{field: 5})  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 5
    assert count_tokens(r.choices[0].message.content or "") == 5


async def test_chat_n_choices_stream_and_not(client: openai.AsyncOpenAI) -> None:
    full = await client.chat.completions.create(model="m", messages=MSGS, n=3)  # type: ignore[arg-type]
    texts = [c.message.content for c in full.choices]
    assert len(set(texts)) == 3 and [c.index for c in full.choices] == [0, 1, 2]
    assert full.usage is not None and full.usage.completion_tokens == 48
    stream = await client.chat.completions.create(model="m", messages=MSGS, n=3, stream=True)  # type: ignore[arg-type]
    parts: dict[int, str] = {0: "", 1: "", 2: ""}
    async for chunk in stream:
        for c in chunk.choices:
            parts[c.index] += c.delta.content or ""
    assert [parts[i] for i in range(3)] == texts


async def test_replies_are_deterministic(client: openai.AsyncOpenAI) -> None:
    async def reply(model: str, text: str) -> str | None:
        msgs = [{"role": "user", "content": text}]
        r = await client.chat.completions.create(model=model, messages=msgs)  # type: ignore[arg-type]
        return r.choices[0].message.content

    a = await reply("gpt-4o-mini", "same input")
    assert a == await reply("gpt-4o-mini", "same input")
    assert a != await reply("gpt-4o-mini", "other input")
    assert a != await reply("mock-small", "same input")


async def test_x_mock_tokens_sets_natural_length(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model="m",
        messages=MSGS,
        extra_headers={"x-mock-tokens": "40"},  # type: ignore[arg-type]
    )
    assert r.usage is not None and r.usage.completion_tokens == 40 and r.choices[0].finish_reason == "stop"


# --- completions, embeddings, responses, models -------------------------------------------------


async def test_completions_stream_and_not(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model="m", prompt="Once upon a time", max_tokens=7)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 7
    stream = await client.completions.create(
        model="m", prompt="Once upon a time", max_tokens=7, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage == r.usage


async def test_completions_prompt_list_and_token_array(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model="m", prompt=["a b", "c"])
    assert [c.index for c in r.choices] == [0, 1] and r.usage is not None and r.usage.prompt_tokens == 3
    r = await client.completions.create(model="m", prompt=[1, 2, 3, 4])
    assert r.usage is not None and r.usage.prompt_tokens == 4


async def test_embeddings_float_and_base64(client: openai.AsyncOpenAI) -> None:
    r = await client.embeddings.create(
        model="text-embedding-3-small", input=["hello there", "bye"], encoding_format="float"
    )
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 1536
    assert math.isclose(math.fsum(x * x for x in r.data[0].embedding), 1.0, rel_tol=1e-9)
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens == 3 == r.usage.total_tokens
    b = await client.embeddings.create(
        model="text-embedding-3-small", input="hello there", dimensions=64, encoding_format="base64"
    )
    raw = base64.b64decode(b.data[0].embedding)  # type: ignore[arg-type]
    decoded = struct.unpack("<64f", raw)
    f = await client.embeddings.create(model="text-embedding-3-small", input="hello there", dimensions=64)
    assert f.data[0].embedding == pytest.approx(decoded, abs=1e-6)  # the SDK's default decodes base64 itself
    assert math.isclose(math.fsum(x * x for x in decoded), 1.0, rel_tol=1e-5)


async def test_embeddings_token_arrays(client: openai.AsyncOpenAI) -> None:
    r = await client.embeddings.create(model="e", input=[[1, 2, 3], [4, 5]], dimensions=8)
    assert len(r.data) == 2 and r.usage.prompt_tokens == 5


async def test_responses_non_stream(client: openai.AsyncOpenAI) -> None:
    r = await client.responses.create(model="gpt-4o-mini", instructions="Be brief.", input="Hi there")
    assert r.status == "completed" and r.output_text.endswith(".")
    assert r.usage is not None and r.usage.input_tokens == count_tokens("Be brief. Hi there")
    assert r.usage.output_tokens == count_tokens(r.output_text) == 16
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    cut = await client.responses.create(model="gpt-4o-mini", input="Hi there", max_output_tokens=4)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.usage is not None and cut.usage.output_tokens == 4


async def test_responses_stream_event_sequence(client: openai.AsyncOpenAI) -> None:
    full = await client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "Hi"}])
    stream = await client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "Hi"}], stream=True)
    events = [e async for e in stream]
    types = [e.type for e in events]
    head = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert types[:4] == head and types[-4:-1] == tail and types[-1] == "response.completed"
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == full.output_text == events[-1].response.output_text  # type: ignore[union-attr]
    assert events[-1].response.usage == full.usage  # type: ignore[union-attr]


async def test_responses_stream_sends_event_lines(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    status, headers, body = await post(http, mock, "/responses", {"model": "m", "input": "x", "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    blocks = body.decode().strip().split("\n\n")
    assert blocks[0].startswith("event: response.created\ndata: {")
    assert all(b.startswith("event: ") for b in blocks)


async def test_models(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "mock-small" in ids
    m = await client.models.retrieve("org/any-model")
    assert m.id == "org/any-model" and m.object == "model"


# --- errors, headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [(b"{not json", None), ({"messages": MSGS}, "model"), ({"model": "m"}, "messages"), (b"[1]", None)],
)
async def test_bad_requests_get_openai_errors(
    mock: MockUpstream, http: aiohttp.ClientSession, body: Any, param: str | None
) -> None:
    status, _, raw = await post(http, mock, "/chat/completions", body)
    err = orjson.loads(raw)["error"]
    assert status == 400 and set(err) == {"message", "type", "code", "param"}
    assert err["type"] == "invalid_request_error" and err["param"] == param


async def test_sdk_sees_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="m", messages=[])


async def test_request_id_is_echoed(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    _, headers, _ = await post(http, mock, "/chat/completions", CHAT, x_request_id="req-123")
    assert headers["x-request-id"] == "req-123"
    _, headers, _ = await post(http, mock, "/chat/completions", {**CHAT, "stream": True}, x_request_id="r2")
    assert headers["x-request-id"] == "r2"
    _, headers, _ = await post(http, mock, "/chat/completions", CHAT, x_request_id="r3", x_mock_fault="503")
    assert headers["x-request-id"] == "r3"


# --- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_fault_header_status(mock: MockUpstream, http: aiohttp.ClientSession, status: int) -> None:
    got, _, raw = await post(http, mock, "/chat/completions", CHAT, x_mock_fault=str(status))
    err = orjson.loads(raw)["error"]
    assert got == status and err["type"] == "server_error" and set(err) == {"message", "type", "code", "param"}
    assert mock.state.faults == {str(status): 1}


async def test_fault_header_429_has_retry_after(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    status, headers, raw = await post(http, mock, "/embeddings", {"model": "e", "input": "x"}, x_mock_fault="429")
    assert status == 429 and headers["Retry-After"] == "1" and headers["retry-after-ms"] == "1000"
    assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"


async def test_sdk_sees_injected_errors(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-fault": "503"})  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model="m", input="x", extra_headers={"x-mock-fault": "429"})


async def test_fault_hang_never_answers(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.5):
            await post(http, mock, "/chat/completions", CHAT, x_mock_fault="hang")
    assert mock.state.faults == {"hang": 1}


async def test_fault_disconnect_mid_stream(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps({**CHAT, "stream": True})
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(
            mock.base_url + "/chat/completions", data=body, headers={"x-mock-fault": "disconnect"}
        ) as r:
            assert r.status == 200
            async for data in r.content.iter_any():
                received += data
    assert received.count(b"data: ") == 2 and b"[DONE]" not in received


async def test_fault_disconnect_mid_stream_via_sdk(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(
        model="m", input="x", stream=True, extra_headers={"x-mock-fault": "disconnect"}
    )
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress"]


async def test_fault_disconnect_non_stream(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, mock, "/chat/completions", CHAT, x_mock_fault="disconnect")


async def test_slow_first_byte_and_latency_header(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    t0 = time.monotonic()
    status, _, _ = await post(http, mock, "/chat/completions", CHAT, x_mock_fault="slow-first-byte:200")
    assert status == 200 and time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    status, _, _ = await post(http, mock, "/chat/completions", CHAT, x_mock_latency_ms="150")
    assert status == 200 and time.monotonic() - t0 >= 0.15


async def test_fail_times_then_success(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    statuses = [(await post(http, mock, "/chat/completions", CHAT, x_mock_fault="fail-times:2:503:k1"))[0]]
    statuses += [(await post(http, mock, "/chat/completions", CHAT, x_mock_fault="fail-times:2:503:k1"))[0]]
    statuses += [(await post(http, mock, "/chat/completions", CHAT, x_mock_fault="fail-times:1:502:k2"))[0]]
    statuses += [(await post(http, mock, "/chat/completions", CHAT, x_mock_fault="fail-times:2:503:k1"))[0]]
    statuses += [(await post(http, mock, "/chat/completions", CHAT, x_mock_fault="fail-times:1:502:k2"))[0]]
    assert statuses == [503, 503, 502, 200, 200]


async def test_sdk_retries_until_fail_times_is_spent(mock: MockUpstream) -> None:
    c = openai.AsyncOpenAI(base_url=mock.base_url, api_key="t", max_retries=2, timeout=5)
    c = c.with_options(max_retries=2)
    r = await c.with_raw_response.chat.completions.create(
        model="m",
        messages=MSGS,
        extra_headers={"x-mock-fault": "fail-times:2:500:retry"},  # type: ignore[arg-type]
    )
    assert r.http_response.status_code == 200
    assert mock.state.requests["chat.completions"] == 3


@pytest.mark.parametrize("header", ["bogus", "600", "fail-times:x:503:k", "fail-times:1:503:", "slow-first-byte:z"])
async def test_malformed_fault_header_is_400(mock: MockUpstream, http: aiohttp.ClientSession, header: str) -> None:
    status, _, raw = await post(http, mock, "/chat/completions", CHAT, x_mock_fault=header)
    assert status == 400 and orjson.loads(raw)["error"]["param"] == "x-mock-fault"


async def fault_sequence(cfg: MockConfig, n: int) -> list[int]:
    async with MockUpstream(cfg) as m, aiohttp.ClientSession() as http:
        return [
            (await post(http, m, "/embeddings", {"model": "e", "input": "x", "dimensions": 4}))[0] for _ in range(n)
        ]


async def test_fault_rates_follow_the_seed() -> None:
    cfg = MockConfig(error_rate=0.3, error_status=502, rate_limit_rate=0.2, retry_after_s=0, seed=42)
    first = await fault_sequence(cfg, 60)
    assert first == await fault_sequence(cfg, 60)
    assert first != await fault_sequence(MockConfig(error_rate=0.3, error_status=502, rate_limit_rate=0.2, seed=7), 60)
    assert set(first) == {200, 429, 502}
    assert 8 <= first.count(502) <= 30 and 4 <= first.count(429) <= 22


async def test_rates_hang_and_disconnect() -> None:
    async with MockUpstream(MockConfig(disconnect_rate=1.0)) as m, aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(http, m, "/chat/completions", CHAT)
    async with MockUpstream(MockConfig(hang_rate=1.0)) as m, aiohttp.ClientSession() as http:
        task = asyncio.create_task(post(http, m, "/chat/completions", CHAT))
        await asyncio.sleep(0.3)
        assert not task.done()
        t0 = time.monotonic()
        await m.stop()  # shutdown ends the hang instead of waiting for it
        assert time.monotonic() - t0 < 2
        with pytest.raises(aiohttp.ClientError):
            await task


# --- pacing ---------------------------------------------------------------------------------------


async def test_stream_pacing_ttft_and_rate(http: aiohttp.ClientSession) -> None:
    async with MockUpstream(MockConfig(ttft_ms=100, tokens_per_s=200)) as m:
        body = orjson.dumps({**CHAT, "stream": True, "max_tokens": 10})
        t0 = time.monotonic()
        arrivals: list[float] = []
        async with http.post(m.base_url + "/chat/completions", data=body) as r:
            async for line in r.content:
                if line.startswith(b"data: {") and b'"content":"' in line and b'"role"' not in line:
                    arrivals.append(time.monotonic() - t0)
        assert len(arrivals) == 10
        assert arrivals[0] >= 0.1 and arrivals[-1] >= 0.1 + 9 / 200 - 0.005
        t0 = time.monotonic()
        status, _, _ = await post(http, m, "/chat/completions", {**CHAT, "max_tokens": 10})
        assert status == 200 and time.monotonic() - t0 >= 0.1 + 10 / 200 - 0.005


# --- stats, health, config ------------------------------------------------------------------------


async def test_stats_and_reset(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    await post(
        http,
        mock,
        "/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        authorization="Bearer upstream-key",
    )
    await post(http, mock, "/embeddings", {"model": "e", "input": "x"})
    await post(http, mock, "/chat/completions", b"{broken", x_mock_fault="500")
    async with http.get(mock.base_url + "/models") as r:
        assert r.status == 200
    async with http.get(mock.url + "/mock/stats") as r:
        stats = await r.json()
    assert stats["requests"] == {"chat.completions": 2, "embeddings": 1, "models": 1} and stats["total"] == 4
    assert stats["faults"] == {"500": 1}
    first = stats["recent"][0]
    assert first["endpoint"] == "chat.completions" and first["path"] == "/v1/chat/completions"
    assert first["body"]["stream_options"] == {"include_usage": True}
    assert {k.lower(): v for k, v in first["headers"].items()}["authorization"] == "Bearer upstream-key"
    assert stats["recent"][2]["body"] == "{broken"
    async with http.get(mock.url + "/mock/stats?last=1") as r:
        assert [e["endpoint"] for e in (await r.json())["recent"]] == ["models"]
    async with http.post(mock.url + "/mock/reset") as r:
        assert r.status == 200
    async with http.get(mock.url + "/mock/stats") as r:
        assert await r.json() == {"total": 0, "requests": {}, "faults": {}, "recent": []}


async def test_ring_buffer_is_bounded(http: aiohttp.ClientSession) -> None:
    async with MockUpstream(MockConfig(record_last=3)) as m:
        for i in range(5):
            await post(http, m, "/embeddings", {"model": "e", "input": str(i), "dimensions": 2})
        assert [e["body"]["input"] for e in m.state.snapshot()["recent"]] == ["2", "3", "4"]
        assert m.state.requests["embeddings"] == 5


async def test_healthz(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.get(mock.url + "/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}


def test_config_validates_everything_at_once() -> None:
    with pytest.raises(ValueError, match="error_rate must be within") as info:
        MockConfig(error_rate=2, latency_ms=-1, error_status=200)
    assert "latency_ms" in str(info.value) and "error_status" in str(info.value)
    with pytest.raises(ValueError, match="must be <= 1"):
        MockConfig(error_rate=0.6, hang_rate=0.6)


def test_cli_arguments_round_trip() -> None:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "9999",
            "--latency-ms",
            "5",
            "--tokens-per-s",
            "50",
            "--error-rate",
            "0.1",
            "--rate-limit-rate",
            "0.05",
            "--hang-rate",
            "0.01",
            "--disconnect-rate",
            "0.02",
            "--seed",
            "3",
            "--models",
            "a, b",
        ]
    )
    cfg = config_from_args(args)
    assert (args.host, args.port) == ("127.0.0.1", 9999)
    assert cfg == MockConfig(
        latency_ms=5,
        tokens_per_s=50,
        error_rate=0.1,
        rate_limit_rate=0.05,
        hang_rate=0.01,
        disconnect_rate=0.02,
        seed=3,
        models=("a", "b"),
    )
    assert config_from_args(parser.parse_args([])) == MockConfig()


async def test_client_leaving_a_paced_stream_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with MockUpstream(MockConfig(tokens_per_s=100)) as m:
        async with aiohttp.ClientSession() as http:
            body = orjson.dumps({**CHAT, "stream": True, "max_tokens": 50})
            async with http.post(m.base_url + "/chat/completions", data=body) as r:
                await r.content.readline()
        await asyncio.sleep(0.2)  # the server notices on its next write
        assert m.state.requests["chat.completions"] == 1
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "WARNING")]


async def test_run_serves_until_sigterm(unused_tcp_port: int) -> None:
    code = f"from mock_upstream import run; run(None, '127.0.0.1', {unused_tcp_port})"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{unused_tcp_port}/healthz") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("mock upstream did not start")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_repeated_request_gets_fresh_id_and_same_reply(client: openai.AsyncOpenAI) -> None:
    a = await client.chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    b = await client.chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    assert a.id != b.id and a.id.startswith("chatcmpl-")
    assert a.choices == b.choices and a.usage == b.usage
    c = await client.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-tokens": "3"})  # type: ignore[arg-type]
    assert c.usage is not None and c.usage.completion_tokens == 3
