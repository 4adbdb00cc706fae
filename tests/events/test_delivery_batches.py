"""A tenant's events share a partition, and aiokafka sends one batch per partition per round trip: the
emitter's batch of 500 typical events (~1 KB each) must go out as one record batch, not several."""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaProducer

from gateway.config import EmitterConfig
from gateway.events.delivery import MAX_BATCH_BYTES, MAX_REQUEST_BYTES, _build, producer_kwargs
from schemas.config import KafkaConfig


def _event(i: int) -> bytes:  # about the size of a small chat exchange's event with redacted text
    return orjson.dumps({"event_id": f"{i:032x}", "tenant": "acme", "request": {"messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 15},
        {"role": "user", "content": "Write one short sentence about the sea. " * 3}]},
        "response": {"text": "The sea is vast and deep, a blue expanse over most of the planet. " * 3},
        "usage": {"input_tokens": 40, "output_tokens": 48, "total_tokens": 88}, "latency_ms": 1.25})


async def test_a_full_emitter_batch_is_one_record_batch_per_partition() -> None:
    kwargs = producer_kwargs(KafkaConfig(bootstrap_servers="127.0.0.1:1"), EmitterConfig())
    assert kwargs["max_batch_size"] == MAX_BATCH_BYTES < MAX_REQUEST_BYTES
    producer = AIOKafkaProducer(**kwargs)  # never started: only its batch builders are used
    try:
        _check(producer)
    finally:
        await producer.stop()


def _check(producer: AIOKafkaProducer) -> None:
    records = [(b"acme", _event(i)) for i in range(EmitterConfig().batch_max)]
    assert 900 < len(records[0][1]) < 1200
    groups = _build(producer, (0, 1, 2, 3, 4, 5), list(enumerate(records)), single=False)
    assert len(groups) == 1 and len(groups[0].indexes) == len(records)  # one tenant -> one partition
    # records of several tenants: one batch per partition they hash to, each record in exactly one
    mixed = [(f"t{i % 4}".encode(), _event(i)) for i in range(len(records))]
    groups = _build(producer, (0, 1, 2, 3, 4, 5), list(enumerate(mixed)), single=False)
    assert len({g.partition for g in groups}) == len(groups) <= 4
    assert sorted(i for g in groups for i in g.indexes) == list(range(len(mixed)))
