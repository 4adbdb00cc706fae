"""Leak test: requests full of canary PII (every default entity type), streamed and not, on chat,
Responses, completions and embeddings. Nothing raw may reach the upstream, the events (recorded, a real
Kafka topic, the spool directory)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gatewatch.procs import TansuBroker
from schemas.config import KafkaConfig
from tests.events.conftest import Collector
from tests.redaction.canaries import CANARIES, MIXED

from .conftest import GatewayFactory, deployment, upstream_bodies

pytestmark = pytest.mark.timeout(120)
RAW = [raw for raw, _ in CANARIES.values()]
RAW_DIGITS = [r.replace(" ", "") for r in RAW]


def requests() -> list[tuple[str, dict[str, Any]]]:
    tool_args = orjson.dumps({"to": "canary.user+tag@example.org", "card": "5500 0000 0000 0004"}).decode()
    chat = {"model": "m", "messages": [
        {"role": "system", "content": "Customer: " + MIXED},
        {"role": "user", "content": [{"type": "text", "text": CANARIES["US_SSN"][1]},
                                     {"type": "text", "text": CANARIES["IBAN_CODE"][1]}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "send", "arguments": tool_args}}]},
        {"role": "tool", "tool_call_id": "c1", "content": CANARIES["IP_ADDRESS"][1]},
        {"role": "user", "content": CANARIES["PHONE_NUMBER"][1]}],
        "gatewatch": {"context": [MIXED]}}
    responses = {"model": "m", "instructions": CANARIES["EMAIL_ADDRESS"][1], "input": [
        {"role": "user", "content": [{"type": "input_text", "text": MIXED}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": tool_args},
        {"type": "function_call_output", "call_id": "c1", "output": CANARIES["US_SSN"][1]}]}
    out = []
    for stream in (False, True):
        out += [("chat/completions", {**chat, "stream": stream}),
                ("responses", {**responses, "stream": stream}),
                ("completions", {"model": "m", "prompt": [MIXED, CANARIES["CREDIT_CARD"][1]], "stream": stream})]
    out.append(("embeddings", {"model": "m", "input": [MIXED, CANARIES["IBAN_CODE"][1]]}))
    return out


def assert_clean(blob: str, where: str) -> None:
    for raw in RAW + RAW_DIGITS:
        assert raw not in blob, f"{raw!r} leaked into {where}"


async def send_all(url: str, key: str) -> None:
    async with aiohttp.ClientSession() as s:
        for path, body in requests():
            async with s.post(f"{url}/{path}", json=body, headers={"authorization": f"Bearer {key}"}) as r:
                await r.read()
                assert r.status == 200, (path, r.status)


async def test_no_canary_reaches_upstream_or_events(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    await send_all(g.base_url, g.key)
    bodies = upstream_bodies(mock)
    assert len(bodies) == len(requests())
    assert_clean(orjson.dumps(bodies).decode(), "the upstream")
    assert "<EMAIL_ADDRESS>" in orjson.dumps(bodies).decode()
    assert len(g.emitter.events) == len(requests())
    assert_clean(orjson.dumps(g.emitter.events).decode(), "the events")
    chat_ev = g.emitter.events[0]
    assert chat_ev["pii_counts"]["EMAIL_ADDRESS"] >= 2 and chat_ev["pii_counts"]["US_SSN"] >= 1
    assert any("<US_SSN>" in (m["content"] or "") for m in chat_ev["request"]["messages"])


async def test_no_canary_in_kafka_or_spool(make_gateway: GatewayFactory, mock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with TansuBroker() as broker:
        kafka = {"bootstrap_servers": broker.bootstrap, "partitions": 1, "request_timeout_ms": 3000}
        g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, kafka=kafka, real_kafka=True)
        async with Collector(KafkaConfig(**kafka)) as col:  # type: ignore[arg-type]
            await send_all(g.base_url, g.key)
            await col.wait_for(len(requests()), timeout=30)
            blob = b"\n".join(v for _, v, _ in col.records)
            assert b"<US_SSN>" in blob
            assert_clean(blob.decode(), "the Kafka topic")
    # the spool: a gateway whose broker is unreachable spools every event to disk
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    g2 = await make_gateway({"m": {"deployments": [deployment(mock)]}}, home=str(tmp_path / "home2"),
                            kafka={"bootstrap_servers": f"127.0.0.1:{dead}", "request_timeout_ms": 500},
                            real_kafka=True, gateway={"emitter": {"retry_interval_s": 30}})
    await send_all(g2.base_url, g2.key)
    await g2.runner.cleanup()
    spool = tmp_path / "home2" / "spool"
    for _ in range(50):
        if any(p.is_file() and p.stat().st_size for p in spool.rglob("*")):
            break
        await asyncio.sleep(0.1)
    blob = b"".join(p.read_bytes() for p in spool.rglob("*") if p.is_file())
    assert blob, "events were spooled"
    assert b"<US_SSN>" in blob, "the spool holds plain event JSON (so the check below means something)"
    assert_clean(blob.decode("utf-8", "replace"), "the spool")
