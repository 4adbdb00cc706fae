"""Fixtures for the emitter tests: a real Tansu broker, events, a consumer, metric deltas."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from gatewatch.procs import TansuBroker, free_port, wait_port
from gateway.config import EmitterConfig
from gateway.events import ensure_topic
from schemas.config import KafkaConfig
from schemas.events import Event

TENANTS = ("acme", "globex", "initech")


def make_event(seq: int, tenant: str | None = None) -> Event:
    now = datetime.now(UTC)
    return Event(
        event_id=str(uuid.uuid4()), request_id=f"req-{seq}", gateway_instance="test-gw", sequence=seq,
        ts_start=now, ts_end=now, tenant=tenant or TENANTS[seq % len(TENANTS)],
        endpoint="chat.completions", operation="chat", status=200, outcome="completed", latency_ms=1.5,
    )


def kafka_config(bootstrap: str, **kw: Any) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=bootstrap, partitions=3, request_timeout_ms=3000, **kw)


def emitter_config(**kw: Any) -> EmitterConfig:
    base: dict[str, Any] = {"retry_interval_s": 0.2, "linger_ms": 2, "batch_max": 200}
    return EmitterConfig(**{**base, **kw})


class Metrics:
    """Deltas of the emitter's counters since the fixture was created (the registry is process-wide)."""

    def __init__(self) -> None:
        self._base = {key: self._raw(*key) for key in self._keys()}

    @staticmethod
    def _keys() -> list[tuple[str, str | None]]:
        names = ["emitted", "delivered", "spooled", "replayed"]
        reasons = ["spool_full", "spool_error", "too_large", "rejected", "corrupt", "serialize", "closed"]
        return [(n, None) for n in names] + [("dropped", r) for r in reasons]

    @staticmethod
    def _raw(name: str, reason: str | None) -> float:
        labels = {"reason": reason} if reason else None
        return REGISTRY.get_sample_value(f"gatewatch_emitter_events_{name}_total", labels) or 0.0

    def __call__(self, name: str, reason: str | None = None) -> float:
        return self._raw(name, reason) - self._base.get((name, reason), 0.0)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def s3_env() -> Iterator[dict[str, str]]:
    """A moto S3 server with bucket ``tansu``: env for ``TansuBroker(storage="s3://tansu/", env=...)``."""
    import boto3  # moto[server] dev dependency

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(__import__("sys").executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_port("127.0.0.1", port, 20, proc)
        endpoint = f"http://127.0.0.1:{port}"
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
        boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket="tansu")
        yield {
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true",
        }
    finally:
        proc.terminate()
        proc.wait(10)


class Collector:
    """Reads every partition of the topic (manual assignment, no group) into ``records``."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self.kafka = kafka
        self.records: list[tuple[bytes, bytes, int]] = []  # key, value, partition
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Collector:
        await ensure_topic(self.kafka)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, auto_offset_reset="earliest",
            enable_auto_commit=False, request_timeout_ms=3000, retry_backoff_ms=100,
        )
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self.kafka.topic, p) for p in range(self.kafka.partitions)])
        self._task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, recs in batches.items():
                self.records.extend((r.key, r.value, tp.partition) for r in recs)

    async def wait_for(self, n: int, timeout: float) -> list[tuple[bytes, bytes, int]]:
        async with asyncio.timeout(timeout):
            while len(self.records) < n:  # noqa: ASYNC110 - polling a test condition
                await asyncio.sleep(0.05)
        return self.records

    def event_ids(self) -> list[str]:
        return [Event.model_validate_json(v).event_id for _, v, _ in self.records]

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


@pytest.fixture
def collector() -> Callable[[KafkaConfig], Collector]:
    return Collector


async def drain(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling a test condition
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(emitter: Any, stop_timeout: float = 5.0) -> AsyncIterator[Any]:
    await emitter.start()
    try:
        yield emitter
    finally:
        await emitter.stop(stop_timeout)
