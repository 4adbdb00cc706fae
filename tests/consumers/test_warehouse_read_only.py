"""A warehouse that refuses writes (chdb's table directories made read-only: what it fails on like a full or
read-only disk) pauses the archiver without committing, is reported by ``health()`` and the console's
``/healthz`` (degraded, with the error and since when), and is caught up once writes succeed again.

Real Tansu, real chdb, the real sink: the driver's error (``Code: 1001 ... filesystem error: in
create_directories``) must classify as transient, never as bad data to dead-letter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.warehouse import Warehouse
from consumers.worker import ConsoleDeps, create_console_app
from schemas.config import KafkaConfig
from tests.cli.up_harness import can_make_read_only, set_writable
from tests.consumers.conftest import make_event, make_pipeline, produce, rows_final, wait_until

pytestmark = pytest.mark.timeout(90)


def _table_dirs(warehouse: Warehouse) -> list[Path]:
    rows = warehouse.client.query(
        "SELECT data_paths FROM system.tables WHERE database = 'gatewatch' AND engine LIKE '%MergeTree'").result_rows
    return sorted({Path(p) for (paths,) in rows for p in paths})


async def _committed(pipeline: Pipeline, topic: str) -> int:
    consumer = pipeline.source.consumer  # type: ignore[attr-defined]
    return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(3)])


async def test_read_only_warehouse_pauses_reports_and_catches_up(
        kafka: KafkaConfig, warehouse: Warehouse, metrics: ConsumerMetrics, started: list[Pipeline],
        tmp_path: Path) -> None:
    if not can_make_read_only(tmp_path):
        pytest.skip("cannot make a directory read-only here (chattr or permissions)")
    events = [make_event(i) for i in range(40)]
    pipeline = make_pipeline(kafka, warehouse, metrics)
    started.append(pipeline)
    await pipeline.start()
    await produce(kafka, events[:10])
    await wait_until(lambda: _rows(warehouse, 10))
    await wait_until(lambda: _committed_is(pipeline, kafka.topic, 10))
    dirs = _table_dirs(warehouse)
    assert dirs
    app = create_console_app(ConsoleDeps(metrics.registry, pipelines=[pipeline]))
    set_writable(dirs, False)
    try:
        await produce(kafka, events[10:])
        await wait_until(lambda: metrics.sink_failures.labels("archiver", "transient")._value.get() >= 3)
        health = pipeline.health()
        assert health["running"] and health["paused"] and health["failures"] >= 3, health
        assert health["error"].startswith("write failing: TransientError: insert into events ("), health
        assert "create_directories" in health["error"] and "failing_since" in health, health
        assert metrics.paused.labels("archiver")._value.get() == 1
        assert metrics.dead_lettered.labels("archiver", "sink_rejected")._value.get() == 0  # not bad data
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/healthz")
            body = await resp.json()
        assert resp.status == 200 and body["status"] == "degraded", body
        archiver = body["pipelines"]["archiver"]
        assert archiver["paused"] and "create_directories" in archiver["error"], archiver
        assert await _committed(pipeline, kafka.topic) == 10  # nothing committed for the batch not written
        assert await rows_final(warehouse) == 10
    finally:
        set_writable(dirs, True)
    await wait_until(lambda: _rows(warehouse, 40), timeout=30)
    await wait_until(lambda: _committed_is(pipeline, kafka.topic, 40))
    health = pipeline.health()
    assert not health["paused"] and "error" not in health, health
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/healthz")).json())["status"] == "ok"
    assert metrics.paused.labels("archiver")._value.get() == 0


async def _rows(warehouse: Warehouse, n: int) -> bool:
    return await rows_final(warehouse) == n


async def _committed_is(pipeline: Pipeline, topic: str, n: int) -> bool:
    return await _committed(pipeline, topic) == n

