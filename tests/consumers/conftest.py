"""Fixtures for the consumer tests: a real Tansu broker, a fresh chdb directory per test, event makers.

chdb allows one data directory per process at a time: every test opens its own tmp directory and the
fixture closes it before the next test opens another. No pytest-xdist (never fork after opening chdb).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.archiver import EventsArchiver
from consumers.contracts import Scorer
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline, RetryPolicy, Sink
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.sources.kafka import KafkaSource, KafkaSourceConfig, ensure_topics
from consumers.warehouse import Warehouse, apply_migrations
from gatewatch.procs import TansuBroker
from schemas.config import KafkaConfig
from schemas.events import Event

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
GROUP_OPTIONS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
BASE_TS = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def make_event(seq: int, tenant: str | None = None, **kw: Any) -> Event:
    start = BASE_TS + timedelta(seconds=seq)
    data: dict[str, Any] = dict(
        event_id=f"ev-{uuid.uuid4()}", request_id=f"req-{seq}", gateway_instance="gw-1", sequence=seq,
        ts_start=start, ts_first_token=start + timedelta(milliseconds=120), ts_end=start + timedelta(seconds=1),
        tenant=tenant or TENANTS[seq % len(TENANTS)], key_id="key-1", end_user=f"user-{seq % 7}",
        metadata={"team": "search", "env": "test"}, endpoint="chat.completions", operation="chat",
        request_model="gpt-4o-mini", response_model="llama-3.1-8b", deployment="vllm-a", provider="openai",
        response_id=f"resp-{seq}", stream=seq % 2 == 0, attempts=1, status=200, outcome="completed",
        latency_ms=1000.0 + seq, ttft_ms=120.5, usage={"input_tokens": 12, "output_tokens": 30 + seq,
                                                        "total_tokens": 42 + seq},
        cost_usd=0.00042, capture="full",
        request={"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{seq}"}],
                 "context": [{"role": "document", "content": "Paris is in France."}],
                 "params": {"temperature": 0.2, "max_tokens": 64, "stop": ["\n\n"]}},
        response={"text": f"answer {seq}", "finish_reasons": ["stop"]},
        policy={"decision": "flag", "rule_ids": ["pii-email"], "reason": "email", "policy_version": "v3"},
        pii_counts={"EMAIL_ADDRESS": 1},
    )
    data.update(kw)
    return Event.model_validate(data)


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


@pytest.fixture
async def kafka(broker: TansuBroker) -> KafkaConfig:
    suffix = uuid.uuid4().hex[:8]
    cfg = KafkaConfig(bootstrap_servers=broker.bootstrap, topic=f"events-{suffix}", dlq_topic=f"dlq-{suffix}",
                      partitions=3, request_timeout_ms=5000)
    await ensure_topics(cfg)
    return cfg


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(f"chdb://{tmp_path / 'warehouse'}") as wh:
        apply_migrations(wh.client)
        yield wh


@pytest.fixture
def metrics() -> ConsumerMetrics:
    return ConsumerMetrics(CollectorRegistry())


async def produce(kafka: KafkaConfig, messages: Sequence[Event | bytes | None], key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        for msg in messages:
            if isinstance(msg, Event):
                await producer.send(kafka.topic, msg.to_json(), key=msg.tenant.encode())
            else:
                await producer.send(kafka.topic, msg, key=key or b"bad")
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(kafka: KafkaConfig, topic: str, count: int, timeout: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


class WrappedSink:
    """A test sink around the real chdb sink: subclasses change ``write`` (fail, block, slow down)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def write(self, rows: Any) -> None:
        self.calls += 1
        await self.inner.write(rows)


def make_pipeline(kafka: KafkaConfig, warehouse: Warehouse, metrics: ConsumerMetrics, *,
                  name: str = "archiver", group: str | None = None, sink: Sink | None = None,
                  scorers: Sequence[Scorer] | None = None, max_records: int = 100, max_wait_ms: int = 300,
                  dead_letter: bool = True) -> Pipeline:
    # one group per test (a group outlives its members on the broker); the worker test uses the real names
    source = KafkaSource(name, kafka, KafkaSourceConfig(
        group_id=group or f"group-{kafka.topic}", max_records=max_records, max_wait_ms=max_wait_ms,
        dead_letter=dead_letter, consumer_options=dict(GROUP_OPTIONS)), metrics=metrics)
    return Pipeline(name, source, [EventsArchiver()] if scorers is None else scorers,
                    sink or ClickHouseSink(warehouse.new_client), retry=RetryPolicy(0.05, 0.3), metrics=metrics)


async def wait_until(cond: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(every)


def count(warehouse: Warehouse, sql: str) -> int:
    return int(warehouse.client.query(sql).result_rows[0][0])


async def rows_final(warehouse: Warehouse, table: str = "events") -> int:
    return await asyncio.to_thread(count, warehouse, f"SELECT count() FROM gatewatch.{table} FINAL")


@pytest.fixture
async def started() -> AsyncIterator[list[Pipeline]]:
    """Pipelines appended here are stopped at teardown (stop is idempotent)."""
    pipelines: list[Pipeline] = []
    yield pipelines
    await asyncio.gather(*(p.stop(10) for p in pipelines), return_exceptions=True)


async def http_get(url: str) -> tuple[int, Any]:
    """(status, JSON or text); (0, {}) while nothing listens yet."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())
    except aiohttp.ClientConnectionError:
        return 0, {}
