"""EventEmitter against a real Tansu broker: delivery, broker down at start, queue/spool limits, shutdown."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from gatewatch.procs import TansuBroker, free_port
from gateway.events import EventEmitter, Spool
from schemas.events import Event

from .conftest import (
    TENANTS,
    Collector,
    Metrics,
    drain,
    emitter_config,
    kafka_config,
    make_event,
    running,
)

pytestmark = pytest.mark.timeout(30)


async def test_emitted_events_arrive_once_keyed_by_tenant(
    broker: TansuBroker, spool_dir: Path, metrics: Metrics
) -> None:
    kafka = kafka_config(broker.bootstrap)
    events = [make_event(i) for i in range(1000)]
    async with Collector(kafka) as col, running(EventEmitter(kafka, emitter_config(), spool_dir)) as em:
        for ev in events:
            em.emit(ev)
        records = await col.wait_for(len(events), timeout=15)
        await drain(lambda: metrics("delivered") >= len(events), timeout=5)

    by_id = {e.event_id: e for e in events}
    assert Counter(col.event_ids()) == Counter(by_id.keys())  # each exactly once
    partitions_by_tenant: dict[str, set[int]] = {}
    for key, value, partition in records:
        ev = Event.model_validate_json(value)
        assert key == ev.tenant.encode()
        assert ev == by_id[ev.event_id]
        partitions_by_tenant.setdefault(ev.tenant, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_tenant.values())  # key = tenant -> one partition each
    assert set(partitions_by_tenant) == set(TENANTS)
    assert metrics("emitted") == metrics("delivered") == len(events)
    assert metrics("spooled") == 0


async def test_no_broker_at_start_spools_then_replays_in_order(spool_dir: Path, metrics: Metrics) -> None:
    port = free_port()
    kafka = kafka_config(f"127.0.0.1:{port}")
    em = EventEmitter(kafka, emitter_config(), spool_dir)
    t0 = time.perf_counter()
    await em.start()
    assert time.perf_counter() - t0 < 1.0
    events = [make_event(i, tenant="acme") for i in range(300)]  # one key: one partition, total order
    try:
        for ev in events:
            t = time.perf_counter()
            em.emit(ev)
            assert time.perf_counter() - t < 0.05
        await drain(lambda: metrics("spooled") == len(events), timeout=10)
        assert em.spooling
        assert any(spool_dir.glob("*.seg"))
        with TansuBroker(port=port) as _broker:
            async with Collector(kafka) as col:
                await col.wait_for(len(events), timeout=15)
                assert col.event_ids()[: len(events)] == [e.event_id for e in events]
                await drain(lambda: not em.spooling, timeout=5)
                late = make_event(999, tenant="acme")  # live path again after the replay
                em.emit(late)
                await col.wait_for(len(events) + 1, timeout=10)
                assert col.event_ids()[-1] == late.event_id
                await em.stop(2)  # before the broker goes: tansu waits for open connections on SIGTERM
    finally:
        await em.stop(2)
    assert metrics("replayed") == len(events)
    assert metrics("dropped", "spool_full") == 0


async def test_queue_full_spools_and_spool_full_drops_counted(spool_dir: Path, metrics: Metrics) -> None:
    kafka = kafka_config(f"127.0.0.1:{free_port()}")  # nothing listens: everything goes to the spool
    cfg = emitter_config(queue_max=10, spool_max_bytes=64 << 10, spool_segment_bytes=16 << 10)
    em = EventEmitter(kafka, cfg, spool_dir)
    for i in range(5):  # before start(): queued
        em.emit(make_event(i))
    await em.start()
    try:
        n = 500  # ~400 bytes each: far more than 64 KiB
        for i in range(n):
            em.emit(make_event(i))  # must not raise
        assert em.queue_depth == 10  # queue full first, then the spool, then drops
        spooled, dropped = metrics("spooled"), metrics("dropped", "spool_full")
        assert spooled > 0 and dropped > 0
        assert spooled + dropped + em.queue_depth == n + 5
        assert sum(p.stat().st_size for p in spool_dir.glob("*.seg")) <= cfg.spool_max_bytes
    finally:
        await em.stop(1)
    assert metrics("spooled") + metrics("dropped", "spool_full") == n + 5
    assert metrics("emitted") == n + 5


async def test_stop_spools_undelivered_and_next_emitter_replays(spool_dir: Path, metrics: Metrics) -> None:
    port = free_port()
    kafka = kafka_config(f"127.0.0.1:{port}")
    events = [make_event(i, tenant="globex") for i in range(200)]
    em = EventEmitter(kafka, emitter_config(), spool_dir)
    await em.start()
    for ev in events:
        em.emit(ev)
    t0 = time.perf_counter()
    await em.stop(1.0)
    await em.stop(1.0)  # idempotent
    assert time.perf_counter() - t0 < 5
    em.emit(make_event(1000))  # after stop: counted, never raised
    assert metrics("dropped", "closed") == 1

    spool = Spool(spool_dir, 1 << 30, 16 << 20)
    spool.open()
    assert spool.pending
    spool.close()

    with TansuBroker(port=port):
        async with Collector(kafka) as col, running(EventEmitter(kafka, emitter_config(), spool_dir)):
            await col.wait_for(len(events), timeout=15)
            assert col.event_ids() == [e.event_id for e in events]
    assert metrics("replayed") == len(events)


async def test_stop_before_start_is_safe(spool_dir: Path) -> None:
    em = EventEmitter(kafka_config("127.0.0.1:1"), emitter_config(), spool_dir)
    await em.stop(0.1)
    await em.stop(0.1)


async def test_queue_overflow_with_live_broker_spools_and_replays_in_order(
    broker: TansuBroker, spool_dir: Path, metrics: Metrics
) -> None:
    kafka = kafka_config(broker.bootstrap)
    events = [make_event(i, tenant="initech") for i in range(2000)]
    async with Collector(kafka) as col, running(EventEmitter(kafka, emitter_config(queue_max=50), spool_dir)) as em:
        await drain(lambda: em.queue_depth == 0 and not em.spooling, timeout=5)
        for ev in events:  # a burst with no await in between: the queue overflows into the spool
            em.emit(ev)
        assert em.spooling and em.queue_depth == 50
        await col.wait_for(len(events), timeout=20)
        await drain(lambda: not em.spooling, timeout=5)
    assert col.event_ids() == [e.event_id for e in events]  # one partition: the queue first, then the spool
    assert metrics("spooled") == len(events) - 50
    assert metrics("replayed") == len(events) - 50
    assert not any(spool_dir.glob("*.seg"))  # replayed segments are deleted
