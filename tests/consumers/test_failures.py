"""Sink failures pause the pipeline without committing; invalid input is dead-lettered; scorer rejects."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.contracts import PermanentError, TableRows, TransientError
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.warehouse import Warehouse
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.consumers.conftest import WrappedSink, make_event, make_pipeline, produce, read_topic, rows_final, wait_until


class FlakySink(WrappedSink):
    """Fails ``failures`` times with TransientError, then delegates to the real chdb sink."""

    def __init__(self, inner: ClickHouseSink, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    async def write(self, rows: TableRows) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError("warehouse unavailable")
        await self.inner.write(rows)


async def _committed(pipeline: Pipeline, topic: str) -> list[int | None]:
    consumer = pipeline.source.consumer  # type: ignore[attr-defined]
    return [await consumer.committed(TopicPartition(topic, p)) for p in range(3)]


async def test_sink_failure_pauses_then_catches_up(kafka: KafkaConfig, warehouse: Warehouse,
                                                   metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    events = [make_event(i) for i in range(60)]
    await produce(kafka, events[:30])
    sink = FlakySink(ClickHouseSink(warehouse.new_client), failures=8)
    pipeline = make_pipeline(kafka, warehouse, metrics, sink=sink)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: sink.calls >= 3)
    assert metrics.paused.labels("archiver")._value.get() == 1
    assert pipeline.source.consumer.paused()  # type: ignore[attr-defined]
    assert await _committed(pipeline, kafka.topic) == [None, None, None]
    assert await rows_final(warehouse) == 0
    await produce(kafka, events[30:])  # arrives while paused
    await wait_until(lambda: _rows(warehouse, len(events)), timeout=30)
    await wait_until(lambda: metrics.paused.labels("archiver")._value.get() == 0)
    assert not pipeline.source.consumer.paused()  # type: ignore[attr-defined]
    assert metrics.sink_failures.labels("archiver", "transient")._value.get() == 8
    await wait_until(lambda: _all_committed(pipeline, kafka.topic, len(events)))


async def _rows(warehouse: Warehouse, n: int) -> bool:
    return await rows_final(warehouse) == n


async def _all_committed(pipeline: Pipeline, topic: str, n: int) -> bool:
    return sum(c or 0 for c in await _committed(pipeline, topic)) == n


async def test_invalid_messages_dead_lettered(kafka: KafkaConfig, warehouse: Warehouse,
                                              metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    good = [make_event(i, tenant="acme") for i in range(4)]
    wrong_schema = make_event(9).model_dump(mode="json") | {"outcome": "exploded"}
    import orjson

    messages: list[Event | bytes | None] = [good[0], b"not json {", good[1], orjson.dumps(wrong_schema),
                                            b'{"event_id": "x"}', None, good[2], good[3]]
    await produce(kafka, messages, key=b"acme")  # one key: one partition, order kept
    pipeline = make_pipeline(kafka, warehouse, metrics)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: _rows(warehouse, 4))
    dead = await read_topic(kafka, kafka.dlq_topic, 4)
    assert len(dead) == 4
    reasons = [dict(r.headers)["gatewatch-dlq-reason"].decode() for r in dead]
    assert reasons == ["invalid_json", "invalid_event", "invalid_event", "invalid_json"]
    assert dead[0].value == b"not json {" and dead[0].key == b"acme"
    assert b"outcome" in dict(dead[1].headers)["gatewatch-dlq-error"]
    assert {dict(r.headers)["gatewatch-dlq-pipeline"] for r in dead} == {b"archiver"}
    assert metrics.dead_lettered.labels("archiver", "invalid_json")._value.get() == 2
    assert metrics.dead_lettered.labels("archiver", "invalid_event")._value.get() == 2
    await wait_until(lambda: _all_committed(pipeline, kafka.topic, len(messages)))
    await produce(kafka, [make_event(20, tenant="acme")])  # keeps going
    await wait_until(lambda: _rows(warehouse, 5))


class PickyScorer:
    """Scores every event; refuses (PermanentError) batches holding an event tagged metadata.poison."""

    name = "picky"

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def score(self, events: Sequence[Event]) -> TableRows:
        if any("poison" in e.metadata for e in events):
            raise PermanentError("cannot score this event")
        return {"scores": [{
            "event_id": e.event_id, "ts": e.ts_end, "tenant": e.tenant, "request_model": e.request_model or "",
            "scorer": self.name, "metric": "length", "target": "response",
            "value": float(len(e.response.text or "")), "label": "", "backend": "cpu", "model": "len",
            "model_version": "1"} for e in events]}


async def test_scorer_rejects_one_event(kafka: KafkaConfig, warehouse: Warehouse,
                                        metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    events = [make_event(i, tenant="acme") for i in range(10)]
    events[3] = make_event(3, tenant="acme", metadata={"poison": "1"})
    await produce(kafka, events)
    pipeline = make_pipeline(kafka, warehouse, metrics, name="picky",
                             scorers=[PickyScorer()], dead_letter=True)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: _rows_in(warehouse, "scores", 9))
    dead = await read_topic(kafka, kafka.dlq_topic, 1)
    assert [dict(r.headers)["gatewatch-dlq-reason"] for r in dead] == [b"scorer_rejected"]
    assert Event.model_validate_json(dead[0].value).event_id == events[3].event_id
    assert metrics.scored.labels("picky", "picky")._value.get() == 10


async def _rows_in(warehouse: Warehouse, table: str, n: int) -> bool:
    return await rows_final(warehouse, table) == n


class SlowSink(WrappedSink):
    def __init__(self, inner: ClickHouseSink) -> None:
        super().__init__(inner)
        self.writing = asyncio.Event()

    async def write(self, rows: TableRows) -> None:
        self.writing.set()
        await asyncio.sleep(0.5)
        await self.inner.write(rows)


async def test_graceful_stop_finishes_and_commits_the_batch(kafka: KafkaConfig, warehouse: Warehouse,
                                                            metrics: ConsumerMetrics) -> None:
    events = [make_event(i) for i in range(30)]
    await produce(kafka, events)
    sink = SlowSink(ClickHouseSink(warehouse.new_client))
    pipeline = make_pipeline(kafka, warehouse, metrics, sink=sink, max_records=1000, max_wait_ms=1000)
    await pipeline.start()
    await asyncio.wait_for(sink.writing.wait(), 30)
    await pipeline.stop()  # while the write is in flight
    written = await rows_final(warehouse)
    assert written > 0 and pipeline.source.consumer is None  # type: ignore[attr-defined]
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=f"group-{kafka.topic}",
                             enable_auto_commit=False)
    await probe.start()
    try:
        committed = [await probe.committed(TopicPartition(kafka.topic, p)) or 0 for p in range(3)]
    finally:
        await probe.stop()
    assert sum(committed) == written  # exactly what was written, nothing more
