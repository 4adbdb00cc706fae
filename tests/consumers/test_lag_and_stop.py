"""The Kafka source against the real broker: the lag gauge moves while a batch is stuck, and a stop
request cuts the batch window short without losing or committing anything unwritten."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.contracts import TableRows
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.warehouse import Warehouse
from schemas.config import KafkaConfig
from tests.consumers.conftest import WrappedSink, make_event, make_pipeline, produce, rows_final, wait_until

pytestmark = pytest.mark.timeout(60)


class GateSink(WrappedSink):
    """Blocks every write until ``gate`` is set, then writes to chdb."""

    def __init__(self, inner: ClickHouseSink) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()

    async def write(self, rows: TableRows) -> None:
        self.calls += 1
        await self.gate.wait()
        await self.inner.write(rows)


def _lag(metrics: ConsumerMetrics, name: str = "archiver") -> float:
    return metrics.lag.labels(name)._value.get()


async def _committed(pipeline: Pipeline, topic: str) -> list[int | None]:
    consumer = pipeline.source.consumer  # type: ignore[attr-defined]
    return [await consumer.committed(TopicPartition(topic, p)) for p in range(3)]


async def test_lag_rises_while_a_batch_is_stuck_and_falls_when_it_drains(
        kafka: KafkaConfig, warehouse: Warehouse, metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    await produce(kafka, [make_event(i) for i in range(20)])
    sink = GateSink(ClickHouseSink(warehouse.new_client))
    pipeline = make_pipeline(kafka, warehouse, metrics, sink=sink, max_records=5, max_wait_ms=100)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: sink.calls == 1)  # the first batch (5 events) hangs in the sink
    await wait_until(lambda: _lag(metrics) == 20, timeout=10)  # nothing committed: all 20 behind
    for i in range(20, 30):  # one at a time: Tansu's end-offset lookup is exact only for 1-record batches
        await produce(kafka, [make_event(i)])
    await wait_until(lambda: _lag(metrics) == 30, timeout=10)  # grows while the batch is still stuck
    assert sink.calls == 1 and await rows_final(warehouse) == 0
    sink.gate.set()
    await wait_until(lambda: _lag(metrics) == 0 and pipeline.batches_done >= 6, timeout=20)
    assert await rows_final(warehouse) == 30
    assert sum(c or 0 for c in await _committed(pipeline, kafka.topic)) == 30
    await asyncio.sleep(1.5)  # periodic refreshes keep it at 0
    assert _lag(metrics) == 0


async def _taken(pipeline: Pipeline, n: int) -> bool:
    """The source has taken ``n`` records from the consumer (the open batch and anything before it)."""
    consumer = pipeline.source.consumer  # type: ignore[attr-defined]
    return sum([await consumer.position(tp) for tp in consumer.assignment()]) == n


async def test_stop_cuts_the_batch_window_short_and_keeps_the_partial_batch(
        kafka: KafkaConfig, warehouse: Warehouse, metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    pipeline = make_pipeline(kafka, warehouse, metrics, max_records=1000, max_wait_ms=10_000)
    started.append(pipeline)
    await pipeline.start()
    await produce(kafka, [make_event(i) for i in range(12)])
    await wait_until(lambda: _taken(pipeline, 12), timeout=20)  # all in the open batch, 10 s window
    assert await rows_final(warehouse) == 0 and pipeline.batches_done == 0
    began = time.monotonic()
    await pipeline.stop()
    took = time.monotonic() - began
    assert took < 3.0, f"stop took {took:.1f}s"
    assert pipeline.batches_done == 1 and await rows_final(warehouse) == 12  # written...
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=f"group-{kafka.topic}",
                             enable_auto_commit=False)  # ...and committed
    await probe.start()
    try:
        assert sum([await probe.committed(TopicPartition(kafka.topic, p)) or 0 for p in range(3)]) == 12
    finally:
        await probe.stop()


def test_worker_config_sets_the_lag_refresh_interval() -> None:
    from prometheus_client import CollectorRegistry

    from consumers.config import WorkerConfig
    from consumers.registry import PipelineContext, archiver_pipeline

    ctx = PipelineContext(KafkaConfig(), WorkerConfig(lag_interval_s=0.25), None, ConsumerMetrics(CollectorRegistry()),
                          "archiver", sink_factory=lambda _: WrappedSink(None))  # type: ignore[arg-type]
    assert archiver_pipeline(ctx).source.cfg.lag_interval_s == 0.25
    assert WorkerConfig().lag_interval_s == 1.0
    with pytest.raises(ValueError):
        WorkerConfig(lag_interval_s=0)
