"""The worker starts the evaluator when ``<home>/alerts.yaml`` exists and stops it before closing the
warehouse (real Tansu broker, chdb on disk, webhook receiver)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from consumers.metrics import ConsumerMetrics
from consumers.warehouse import Warehouse
from consumers.worker import run_worker
from gatewatch.config import Settings
from gatewatch.procs import free_port
from schemas.config import KafkaConfig
from tests.alerts.conftest import Receiver
from tests.consumers.conftest import GROUP_OPTIONS, broker, kafka, wait_until  # noqa: F401 -- fixtures

pytestmark = pytest.mark.timeout(60)

RULES = """
interval_s: 1
webhooks: {{hook: {{url: "{url}"}}}}
rules:
  - id: always
    metric: custom_sql
    sql: SELECT count() + 1 FROM gatewatch.events FINAL
    op: ">="
    threshold: 1
    notify: [hook]
"""


async def test_worker_runs_the_evaluator(kafka: KafkaConfig, tmp_path: Path,  # noqa: F811
                                         receiver: Receiver) -> None:
    (tmp_path / "alerts.yaml").write_text(RULES.format(url=receiver.url))
    dsn, port = f"chdb://{tmp_path / 'wh'}", free_port()
    settings = Settings(home=tmp_path, kafka=kafka, worker={
        "warehouse_dsn": dsn, "pipelines": ["archiver"], "console_port": port, **GROUP_OPTIONS})
    metrics = ConsumerMetrics(CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=metrics))
    try:
        await wait_until(lambda: len(receiver.requests) >= 1 or task.done(), timeout=40)
        assert not task.done() and receiver.requests[0]["status"] == "firing"
        assert receiver.requests[0]["rule"] == "always" and receiver.requests[0]["group"] == {}
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
        assert 'gatewatch_alerts_evaluations_total{result="ok",rule="always"}' in text
        assert 'gatewatch_alerts_firing{rule="always"} 1.0' in text
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert len(receiver.requests) == 1  # deduplicated across the evaluations
    with Warehouse(dsn) as wh:
        rows = wh.client.query("SELECT rule_id, state FROM gatewatch.alerts FINAL").result_rows
    assert rows == [("always", "firing")]
