"""Two members of one group share the partitions; the worker runs pipelines and serves the console."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.warehouse import Warehouse
from consumers.worker import migrate, run_worker
from gatewatch.config import Settings, load_settings
from gatewatch.procs import free_port
from schemas.config import ConfigError, KafkaConfig
from tests.consumers.conftest import GROUP_OPTIONS, TENANTS, make_event, make_pipeline, produce, wait_until


def _assigned(pipeline: Pipeline) -> set[int]:
    consumer = pipeline.source.consumer  # type: ignore[attr-defined]
    return {tp.partition for tp in consumer.assignment()} if consumer is not None else set()


async def test_two_members_share_partitions(kafka: KafkaConfig, warehouse: Warehouse,
                                            metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    one = make_pipeline(kafka, warehouse, metrics, name="a1")
    two = make_pipeline(kafka, warehouse, metrics, name="a2")
    started.extend([one, two])
    await asyncio.gather(one.start(), two.start())
    await wait_until(lambda: _assigned(one) and _assigned(two) and len(_assigned(one) | _assigned(two)) == 3,
                     timeout=40)
    assert not _assigned(one) & _assigned(two)
    events = [make_event(i, tenant=f"{TENANTS[i % 5]}-{i % 11}") for i in range(200)]
    await produce(kafka, events)

    def consumed() -> float:
        return sum(metrics.events.labels(n)._value.get() for n in ("a1", "a2"))

    await wait_until(lambda: consumed() >= len(events))
    assert metrics.events.labels("a1")._value.get() > 0 and metrics.events.labels("a2")._value.get() > 0
    rows = warehouse.client.query("SELECT count(), uniqExact(event_id) FROM gatewatch.events FINAL").result_rows
    assert rows == [(200, 200)]


def test_worker_config_errors_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("worker: {pipelines: [nope], console_port: -1, bogus: 1}\n")
    try:
        load_settings(path, {})
    except ConfigError as exc:
        assert len(exc.errors) == 3, exc.errors
        assert all(e.startswith(("worker.pipelines", "worker.console_port", "worker.bogus")) for e in exc.errors)
    else:
        raise AssertionError("expected ConfigError")


async def test_run_worker(kafka: KafkaConfig, tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'wh'}"
    port = free_port()
    settings = Settings(home=tmp_path, kafka=kafka, worker={
        "warehouse_dsn": dsn, "pipelines": ["archiver"], "console_port": port, "events_retention_days": 400,
        "batch": {"max_records": 50, "max_wait_ms": 200}, **GROUP_OPTIONS})
    metrics = ConsumerMetrics(__import__("prometheus_client").CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=metrics))
    events = [make_event(i) for i in range(40)]
    await produce(kafka, events)
    await wait_until(lambda: metrics.rows_written.labels("archiver", "events")._value.get() >= 40 or task.done())
    assert not task.done()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["pipelines"]["archiver"]["running"] is True
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    assert 'gatewatch_consumer_rows_written_total{pipeline="archiver",table="events"} 40.0' in text
    assert "gatewatch_consumer_lag" in text and "gatewatch_consumer_batch_seconds_bucket" in text
    stop.set()
    await asyncio.wait_for(task, 30)
    with Warehouse(dsn) as wh:  # the worker closed its engine; reopen and check
        assert wh.client.query("SELECT count() FROM gatewatch.events FINAL").result_rows == [(40,)]
        assert "toIntervalDay(400)" in wh.client.query(
            "SELECT create_table_query FROM system.tables WHERE database='gatewatch' AND name='events'"
        ).result_rows[0][0]
    assert migrate(dsn) == []


async def test_healthz_reports_pipelines_that_could_not_start() -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from consumers.worker import ConsoleDeps, create_console_app

    app = create_console_app(ConsoleDeps(CollectorRegistry(), failed={"factuality": "OSError: no model"}))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200
        assert await resp.json() == {"status": "degraded", "pipelines": {
            "factuality": {"running": False, "error": "OSError: no model"}}}
