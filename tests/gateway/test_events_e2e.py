"""Gateway -> real Kafka (Tansu): exactly one valid event per request, and no client error or lost event
when the broker goes away under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import aiohttp
import pytest

from gatewatch.procs import TansuBroker
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.events.conftest import Collector, drain, s3_env  # noqa: F401  (s3_env is a fixture)
from tests.gateway.conftest import GatewayFactory, deployment

pytestmark = pytest.mark.timeout(90)


def _kafka(bootstrap: str) -> dict[str, object]:
    return {"bootstrap_servers": bootstrap, "partitions": 3, "request_timeout_ms": 3000}


async def _post(session: aiohttp.ClientSession, url: str, rid: str, body: bytes, key: str | None,
                 extra: dict[str, str] | None = None) -> int:
    headers = {"content-type": "application/json", "x-request-id": rid, **(extra or {})}
    if key:
        headers["authorization"] = f"Bearer {key}"
    async with session.post(url, data=body, headers=headers) as r:
        await r.read()
        return r.status


async def test_every_request_produces_exactly_one_valid_event(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    with TansuBroker() as broker:
        kafka = _kafka(broker.bootstrap)
        g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, kafka=kafka, real_kafka=True,
                               gateway={"max_body_bytes": 4096, "emitter": {"retry_interval_s": 0.2}})
        chat = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
        cases = {
            "ok": (chat, g.key, {}, 200),
            "stream": (b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}',
                       g.key, {}, 200),
            "malformed": (b'{"model": ', g.key, {}, 400),
            "no-key": (chat, None, {}, 401),
            "unknown-model": (b'{"model": "zz", "messages": [{"role": "user", "content": "hi"}]}', g.key, {}, 404),
            "upstream-500": (chat, g.key, {"x-mock-fault": "500"}, 502),
            "too-large": (b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 8000 + b'"}]}',
                          g.key, {}, 413),
        }
        async with Collector(KafkaConfig(**kafka)) as col, aiohttp.ClientSession() as s:  # type: ignore[arg-type]
            for rid, (body, key, extra, want) in cases.items():
                assert await _post(s, g.base_url + "/chat/completions", rid, body, key, extra) == want, rid
            await col.wait_for(len(cases), timeout=20)
            await asyncio.sleep(0.5)  # anything extra would show up now
            events = [Event.model_validate_json(v) for _, v, _ in col.records]
        counts = Counter(e.request_id for e in events)
        assert counts == Counter(list(cases)), counts
        by_rid = {e.request_id: e for e in events}
        for rid, (*_, want) in cases.items():
            assert by_rid[rid].status == want
        assert by_rid["no-key"].outcome == "denied" and by_rid["ok"].outcome == "completed"
        assert sorted(e.sequence for e in events) == list(range(len(cases)))
        assert len({e.gateway_instance for e in events}) == 1


async def test_broker_outage_under_load(make_gateway: GatewayFactory, mock, s3_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    first = TansuBroker(storage="s3://tansu/", env=s3_env).start()
    second: TansuBroker | None = None
    kafka = _kafka(first.bootstrap)
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, kafka=kafka, real_kafka=True,
                           gateway={"emitter": {"retry_interval_s": 0.2}})
    sent: list[str] = []
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()
    chat = b'{"model": "m", "messages": [{"role": "user", "content": "hello"}]}'

    async def load(session: aiohttp.ClientSession) -> None:
        i = 0
        while not stop.is_set():
            rid = f"r{i}"
            sent.append(rid)
            statuses[await _post(session, g.base_url + "/chat/completions", rid, chat, g.key)] += 1
            i += 1
            await asyncio.sleep(0.01)

    try:
        async with Collector(KafkaConfig(**kafka)) as col, aiohttp.ClientSession() as s:  # type: ignore[arg-type]
            loaders = [asyncio.create_task(load(s)) for _ in range(4)]
            await drain(lambda: len(col.records) > 50, timeout=15)
            assert first.proc is not None
            first.proc.kill()
            first.proc.wait()
            await asyncio.sleep(2.0)  # requests keep flowing while the broker is gone
            sent_during_outage = len(sent)
            second = TansuBroker(port=first.port, storage="s3://tansu/", env=s3_env).start()
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*loaders)
            want = set(sent)
            await drain(lambda: want <= {Event.model_validate_json(v).request_id for _, v, _ in col.records},
                        timeout=40)
    finally:
        stop.set()
        await g.runner.cleanup()
        if second is not None:
            second.stop()
        with contextlib.suppress(Exception):
            first.stop()
    assert statuses == Counter({200: len(sent)}), statuses  # zero client errors caused by the outage
    assert sent_during_outage > 50
