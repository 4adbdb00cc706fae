"""Archiver end to end on a real Tansu broker and real chdb: round trip, redelivery, crash before commit."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from consumers.archiver import event_from_row
from consumers.contracts import TableRows
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.warehouse import Warehouse
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.consumers.conftest import count, make_event, make_pipeline, produce, rows_final, wait_until


def _ms(event: Event) -> Event:
    """The event as DateTime64(3) stores it."""
    def trunc(ts):  # type: ignore[no-untyped-def]
        return None if ts is None else ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    return event.model_copy(update={k: trunc(getattr(event, k)) for k in ("ts_start", "ts_first_token", "ts_end")})


async def test_end_to_end_round_trip_and_redelivery(kafka: KafkaConfig, warehouse: Warehouse,
                                                    metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    events = [make_event(i) for i in range(150)]
    events.append(make_event(150, key_id=None, end_user=None, ttft_ms=None, ts_first_token=None, cost_usd=None,
                             capture="hashes", response={"text": None, "text_sha256": "ab" * 32},
                             usage={}, metadata={}, pii_counts={}, outcome="denied", status=403,
                             error_type="policy_denied", error_message="blocked"))
    await produce(kafka, events)
    pipeline = make_pipeline(kafka, warehouse, metrics)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: _rows_equal(warehouse, len(events)))
    result = warehouse.client.query("SELECT * FROM gatewatch.events FINAL")
    by_id = {row["event_id"]: row for row in result.named_results()}
    for event in events:
        assert event_from_row(by_id[event.event_id]) == _ms(event)

    await produce(kafka, events[:50])  # redelivery: the same events again
    await wait_until(lambda: metrics.events.labels("archiver")._value.get() >= len(events) + 50)
    assert await rows_final(warehouse) == len(events)
    assert count(warehouse, "SELECT uniqExact(event_id) FROM gatewatch.events") == len(events)
    await pipeline.stop()
    assert metrics.paused.labels("archiver")._value.get() == 0
    assert metrics.rows_written.labels("archiver", "events")._value.get() == len(events) + 50


async def _rows_equal(warehouse: Warehouse, n: int) -> bool:
    return await rows_final(warehouse) == n


class CrashAfterWrite:
    """The real sink, then a 'crash': the write returns only after the test cancelled the pipeline."""

    def __init__(self, inner: ClickHouseSink) -> None:
        self.inner = inner
        self.wrote = asyncio.Event()

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def write(self, rows: TableRows) -> None:
        await self.inner.write(rows)
        self.wrote.set()
        await asyncio.Event().wait()  # never returns: cancelled before commit


async def test_crash_between_write_and_commit(kafka: KafkaConfig, warehouse: Warehouse,
                                              metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    events = [make_event(i) for i in range(120)]
    await produce(kafka, events)
    crashing = CrashAfterWrite(ClickHouseSink(warehouse.new_client))
    first = make_pipeline(kafka, warehouse, metrics, sink=crashing, max_records=1000, max_wait_ms=1500)
    await first.start()
    await asyncio.wait_for(crashing.wrote.wait(), 30)
    written = await rows_final(warehouse)
    assert written > 0
    consumer = first.source.consumer  # type: ignore[attr-defined]
    assert all([await consumer.committed(TopicPartition(kafka.topic, p)) is None for p in range(3)])
    first._task.cancel()  # the crash: no commit happened  # type: ignore[union-attr]
    await first.stop()

    second = make_pipeline(kafka, warehouse, metrics)
    started.append(second)
    await second.start()
    await wait_until(lambda: _rows_equal(warehouse, len(events)))
    await wait_until(lambda: metrics.events.labels("archiver")._value.get() >= len(events))
    assert count(warehouse, "SELECT count() FROM gatewatch.events") >= len(events) + written  # physical duplicates
    assert count(warehouse, "SELECT uniqExact(event_id) FROM gatewatch.events FINAL") == len(events)
    assert await rows_final(warehouse) == len(events)
