"""Broker outage under load: a durable (S3-on-moto) Tansu broker is killed mid-stream and restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gatewatch.procs import TansuBroker
from gateway.events import EventEmitter

from .conftest import Collector, Metrics, drain, emitter_config, kafka_config, make_event

pytestmark = pytest.mark.timeout(60)

RATE = 400  # events/s
TICK = 0.01


async def test_outage_under_load_loses_nothing(s3_env: dict[str, str], spool_dir: Path, metrics: Metrics) -> None:
    first = TansuBroker(storage="s3://tansu/", env=s3_env).start()
    kafka = kafka_config(first.bootstrap)
    emitted: list[str] = []
    stop_emitting = asyncio.Event()

    async def load() -> None:  # the "request path": emit() only, never awaits the emitter
        seq = 0
        while not stop_emitting.is_set():
            for _ in range(int(RATE * TICK)):
                ev = make_event(seq)
                em.emit(ev)
                emitted.append(ev.event_id)
                seq += 1
            await asyncio.sleep(TICK)

    em = EventEmitter(kafka, emitter_config(batch_max=500), spool_dir)
    second: TansuBroker | None = None
    try:
        async with Collector(kafka) as col:
            await em.start()
            loader = asyncio.create_task(load())
            await drain(lambda: len(col.records) > 200, timeout=10)  # flowing through the first broker
            assert first.proc is not None
            first.proc.kill()  # crash, not a clean shutdown
            first.proc.wait()
            await drain(lambda: em.spooling, timeout=15)
            await asyncio.sleep(1.0)  # keep emitting into the spool
            spooled_during_outage = metrics("spooled")
            second = TansuBroker(port=first.port, storage="s3://tansu/", env=s3_env).start()
            await drain(lambda: not em.spooling, timeout=20)  # replayed, back to live
            await asyncio.sleep(0.5)
            stop_emitting.set()
            await loader  # re-raises anything emit() raised
            await drain(lambda: set(emitted) <= set(col.event_ids()), timeout=20)
            await em.stop(5)
    finally:
        stop_emitting.set()
        await em.stop(1)
        if second is not None:
            second.stop()
        first.stop()

    assert spooled_during_outage > 0
    assert metrics("replayed") >= spooled_during_outage
    assert metrics("emitted") == len(emitted)
    assert metrics("dropped", "spool_full") == 0
    received = col.event_ids()
    assert set(received) == set(emitted)  # every event at least once (duplicates allowed)
    assert len(received) >= len(emitted)
