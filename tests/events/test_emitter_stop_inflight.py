"""A stop that lands while a batch is in flight to a broker that just died keeps that batch.

Found under load against `gatewatch up` (broker SIGKILLed, SIGTERM 50 ms later): the last 3-4 answered
exchanges were missing after the next start in 6 of 8 runs. The stop cancelled the delivery task while it
awaited the acknowledgement; on the way out, aiokafka's producer.stop() raised (a KeyError from its
sender re-enqueueing a batch the abandon had already failed), the exception left ``EventEmitter.stop``
before the batch in flight was spooled, and the spool was never closed. Real Tansu, real emitter."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from gatewatch.procs import TansuBroker
from gateway.events import EventEmitter, Spool, ensure_topic
from gateway.events import delivery as delivery_mod

from .conftest import Metrics, emitter_config, kafka_config, make_event

pytestmark = pytest.mark.timeout(60)


def _spooled(spool_dir: Path) -> int:
    spool = Spool(spool_dir, 1 << 30, 16 << 20)
    spool.open()
    n = 0
    while True:
        records, _ = spool.read(1000)
        if not records:
            break
        n += len(records)
        spool.commit()
    spool.close()
    return n


async def _in_flight(em: EventEmitter, n: int) -> None:
    for _ in range(200):
        if len(em._inflight) == n:  # sent, not acknowledged
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch not in flight: {len(em._inflight)} of {n}")


@pytest.mark.parametrize("close_fails", [False, True], ids=["real-close", "close-raises"])
async def test_stop_with_a_batch_in_flight_to_a_dead_broker_spools_it(
    spool_dir: Path, metrics: Metrics, monkeypatch: pytest.MonkeyPatch, close_fails: bool
) -> None:
    broker = TansuBroker().start()
    kafka = kafka_config(broker.bootstrap).model_copy(update={"request_timeout_ms": 20000})  # outlasts stop()
    await ensure_topic(kafka)
    em = EventEmitter(kafka, emitter_config(), spool_dir)
    try:
        await em.start()
        em.emit(make_event(0))
        for _ in range(100):
            if metrics("delivered") >= 1:
                break
            await asyncio.sleep(0.05)
        assert metrics("delivered") == 1
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the next batch is sent and never acknowledged
        for i in range(1, 5):
            em.emit(make_event(i))
        await _in_flight(em, 4)
        broker.proc.kill()  # the broker dies with that batch in flight (aiokafka now retries the node)
        broker.proc.wait()
        if close_fails:  # whatever the producer's own shutdown raises, stop() goes on
            real = delivery_mod.AIOKafkaProducer.stop

            async def failing_stop(self: object) -> None:
                await real(self)
                raise KeyError("batch")
            monkeypatch.setattr(delivery_mod.AIOKafkaProducer, "stop", failing_stop)
        await asyncio.sleep(0.05)
        await em.stop(timeout=1.0)  # cancels the delivery task mid-acknowledgement
    finally:
        broker.stop()
    assert _spooled(spool_dir) == 4  # the batch in flight is in the spool, replayed at the next start
    assert metrics("dropped", "closed") == 0
