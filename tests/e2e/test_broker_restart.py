"""The embedded broker (Tansu, memory://) SIGKILLed and restarted on the same port, empty: every event the
gateway's emitter had delivered reaches the audit log exactly once (retention + replay, consumer rewind),
and a real loss (retention off) is counted and logged.

Real components throughout: Tansu, the EventEmitter, the archiver pipeline (KafkaSource -> chdb sink)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.sources.kafka import ensure_topics
from consumers.warehouse import Warehouse
from gatewatch.procs import TansuBroker
from gateway.config import EmitterConfig
from gateway.events import EventEmitter
from schemas.config import KafkaConfig
from tests.consumers.conftest import (  # noqa: F401  (metrics, started, warehouse are fixtures)
    WrappedSink,
    make_event,
    make_pipeline,
    metrics,
    started,
    wait_until,
    warehouse,
)

pytestmark = pytest.mark.timeout(90)


class Counters:
    """Deltas of emitter counters (process-wide registry) since creation."""

    NAMES = {
        "delivered": ("gatewatch_emitter_events_delivered_total", None),
        "resent": ("gatewatch_emitter_events_resent_total", None),
        "resets": ("gatewatch_emitter_log_resets_total", None),
        "unretained": ("gatewatch_emitter_events_unretained_total", None),
        "lost": ("gatewatch_emitter_events_dropped_total", {"reason": "broker_lost"}),
    }

    def __init__(self) -> None:
        self._base = {k: self._raw(k) for k in self.NAMES}

    def _raw(self, key: str) -> float:
        name, labels = self.NAMES[key]
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def __call__(self, key: str) -> float:
        return self._raw(key) - self._base[key]


class GatedSink(WrappedSink):
    """The real chdb sink behind a gate: closed, a write waits (a batch in flight, offsets uncommitted)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def write(self, rows: Any) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().write(rows)


def _kafka(broker: TansuBroker) -> KafkaConfig:
    suffix = uuid.uuid4().hex[:8]
    return KafkaConfig(bootstrap_servers=broker.bootstrap, topic=f"events-{suffix}", dlq_topic=f"dlq-{suffix}",
                       partitions=3, request_timeout_ms=5000)


def _emitter_config(group: str, **kw: Any) -> EmitterConfig:
    base: dict[str, Any] = {"retain_group": group, "retain_poll_s": 0.2, "reset_hold_s": 6.0,
                            "retry_interval_s": 0.2, "linger_ms": 2, "batch_max": 200}
    return EmitterConfig(**{**base, **kw})


async def _restart(broker: TansuBroker, kafka: KafkaConfig) -> TansuBroker:
    """SIGKILL (no clean shutdown: memory:// keeps nothing), then a new broker on the same port whose topics
    are created at once, as a supervisor restarting it does (Tansu's auto-creation, by whichever client
    names the topic first, can leave a topic inconsistent under concurrent produce: docs/reliability.md)."""
    assert broker.proc is not None
    broker.proc.kill()
    broker.proc.wait()
    second = TansuBroker(port=broker.port).start()
    await ensure_topics(kafka)
    return second


async def _archive(wh: Warehouse) -> tuple[int, int, set[str]]:
    """(rows under FINAL, distinct event ids, the ids)."""
    def query() -> tuple[int, int, set[str]]:
        rows = wh.client.query("SELECT event_id FROM gatewatch.events FINAL").result_rows
        ids = [r[0] for r in rows]
        return len(ids), len(set(ids)), set(ids)
    return await asyncio.to_thread(query)


async def test_broker_killed_with_unarchived_events_loses_nothing(
    tmp_path: Path, warehouse: Warehouse, metrics: ConsumerMetrics, started: list[Pipeline]  # noqa: F811
) -> None:
    counters = Counters()
    broker = TansuBroker().start()
    second: TansuBroker | None = None
    kafka = _kafka(broker)
    group = f"archiver-{kafka.topic}"
    await ensure_topics(kafka)
    sink = GatedSink(ClickHouseSink(warehouse.new_client))
    pipeline = make_pipeline(kafka, warehouse, metrics, group=group, sink=sink, max_records=100, max_wait_ms=200)
    started.append(pipeline)
    em = EventEmitter(kafka, _emitter_config(group), tmp_path / "spool")
    emitted: list[str] = []

    def emit(n: int) -> None:
        for _ in range(n):
            ev = make_event(len(emitted))
            em.emit(ev)
            emitted.append(ev.event_id)

    try:
        await em.start()
        await pipeline.start()
        emit(400)  # flows through and is archived
        await wait_until(lambda: _count_is(warehouse, 400), timeout=30)
        sink.gate.clear()  # the archiver stalls on its next batch: fetched, not written, not committed
        emit(800)
        await wait_until(lambda: counters("delivered") >= 1200, timeout=15)  # acknowledged (acks=all)
        await asyncio.wait_for(sink.waiting.wait(), 10)
        second = await _restart(broker, kafka)
        emit(200)  # traffic right after the restart (spooled during the hold, sent after the replay)
        sink.gate.set()
        await wait_until(lambda: counters("resets") >= 1, timeout=15)
        await wait_until(lambda: _count_is(warehouse, len(emitted)), timeout=45)
        await asyncio.sleep(1.0)  # anything extra (a row per duplicate would not show under FINAL anyway)
        rows, distinct, ids = await _archive(warehouse)
    finally:
        await em.stop(5)
        await pipeline.stop(10)
        (second or broker).stop()
        broker.stop()
    assert ids == set(emitted)
    assert rows == distinct == len(emitted)  # exactly one row per event under FINAL
    assert counters("lost") == 0
    assert counters("resent") >= 800 - 100  # what the archiver had not committed was sent again


async def _count_is(wh: Warehouse, n: int) -> bool:
    rows, _, _ = await _archive(wh)
    return rows >= n


async def test_real_loss_is_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    broker = TansuBroker().start()
    second: TansuBroker | None = None
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    # retention off (nothing kept on disk), and no archiver ever commits: every acknowledged event is at risk
    em = EventEmitter(kafka, _emitter_config("nobody-archives", retain_max_bytes=0), tmp_path / "spool")
    try:
        await em.start()
        for i in range(300):
            em.emit(make_event(i))
        await wait_until(lambda: counters("delivered") >= 300, timeout=15)
        assert counters("unretained") == 300
        with caplog.at_level(logging.ERROR, logger="gateway.events.recovery"):
            second = await _restart(broker, kafka)
            await wait_until(lambda: counters("resets") >= 1, timeout=15)
        em.emit(make_event(300))  # the emitter goes on: delivered to the new log after the hold
        await wait_until(lambda: counters("delivered") >= 301, timeout=15)
    finally:
        await em.stop(5)
        (second or broker).stop()
        broker.stop()
    assert counters("lost") == 300
    assert counters("resent") == 0
    assert any("broker lost 300 acknowledged events" in r.getMessage() for r in caplog.records)
