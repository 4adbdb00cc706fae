"""Producer settings and batch delivery for the emitter.

Records go through aiokafka's batch API (``create_batch`` / ``send_batch``): one record-batch builder per
partition, one future per builder, instead of one ``send()`` coroutine and future per record (about 3x
less CPU per event here). Partitions come from aiokafka's ``DefaultPartitioner`` (murmur2 of the key, as
the Java client does), so the same tenant lands on the same partition whoever produced it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner

from gateway.config import EmitterConfig
from gateway.events.segments import Record
from gateway.events.topics import client_kwargs
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20  # producer max_request_size (Kafka's default message.max.bytes is ~1 MiB)
# One record batch per partition and request, as large as a request may be (uncompressed size, so the
# compressed batch is smaller still). aiokafka keeps one batch per partition in flight and queues the next
# builder until it is acknowledged, so a partition's throughput is this size per round trip: at 256 KiB
# (~250 events) a saturated gateway, whose round trips stretch to 0.2-1 s, delivered fewer events per
# second than it answered (all of one tenant's events share a partition) and its queue grew without bound.
MAX_BATCH_BYTES = 960 << 10
# the broker refused these records for good: retrying (or spooling) them cannot help
PERMANENT_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, CorruptRecordException, InvalidTopicError)
_partitioner = DefaultPartitioner()


@functools.lru_cache(maxsize=65536)  # few keys (tenants), and murmur2 in pure Python costs ~15 us
def _partition_for(key: bytes, partitions: tuple[int, ...]) -> int:
    return int(_partitioner(key, list(partitions), list(partitions)))


def producer_kwargs(kafka: KafkaConfig, cfg: EmitterConfig) -> dict[str, Any]:
    return {
        **client_kwargs(kafka),
        "acks": "all",
        "enable_idempotence": False,  # tansu does not support it (aiokafka speaks InitProducerId v0)
        "compression_type": None if cfg.compression == "none" else cfg.compression,
        # the emitter gathers its batches itself (EmitterConfig.linger_ms) and hands them over whole
        # (send_batch): an aiokafka linger on top would only hold each one back again
        "linger_ms": 0,
        "max_batch_size": MAX_BATCH_BYTES,
        "max_request_size": MAX_REQUEST_BYTES,
    }


@dataclass(slots=True)
class SendResult:
    delivered: int = 0
    rejected: int = 0  # refused for good by the broker: count as dropped, do not retry
    failed: list[int] = field(default_factory=list)  # indexes into the batch, in order: retry / spool
    error: str | None = None  # class name of the first failure
    # acknowledged record batches: (partition, base offset, indexes into the batch in offset order)
    acked: list[tuple[int, int, list[int]]] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    partition: int
    builder: Any  # aiokafka BatchBuilder
    indexes: list[int] = field(default_factory=list)


async def send_records(
    producer: AIOKafkaProducer, topic: str, records: list[Record], timeout: float
) -> SendResult:
    """Send ``records`` and wait (at most ``timeout`` seconds) for every acknowledgement."""
    deadline = asyncio.get_running_loop().time() + timeout
    result = SendResult()
    try:
        async with asyncio.timeout_at(deadline):
            partitions = tuple(sorted(await producer.partitions_for(topic)))
    except (KafkaError, TimeoutError) as exc:
        result.error = type(exc).__name__
        result.failed = list(range(len(records)))
        return result
    groups = _build(producer, partitions, list(enumerate(records)), single=False)
    split = await _send_groups(producer, topic, groups, deadline, result, allow_split=True)
    if split:  # the broker refused a multi-record batch as too large: once more, one record per batch
        singles = _build(producer, partitions, [(i, records[i]) for i in split], single=True)
        await _send_groups(producer, topic, singles, deadline, result, allow_split=False)
    result.failed.sort()
    return result


async def _send_groups(
    producer: AIOKafkaProducer, topic: str, groups: list[_Group], deadline: float, result: SendResult,
    allow_split: bool,
) -> list[int]:
    """Hand the batches over and settle them into ``result``; returns indexes to resend one by one."""
    futs: list[asyncio.Future[Any]] = []
    try:
        async with asyncio.timeout_at(deadline):
            for group in groups:
                futs.append(await producer.send_batch(group.builder, topic, partition=group.partition))
    except (KafkaError, TimeoutError) as exc:
        result.error = result.error or type(exc).__name__
    pending: set[asyncio.Future[Any]] = set()
    if futs:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        _, pending = await asyncio.wait(futs, timeout=timeout)
    split: list[int] = []
    for group, fut in zip(groups, futs, strict=False):
        if _settle(result, group, fut, pending) and allow_split and len(group.indexes) > 1:
            result.rejected -= len(group.indexes)
            split.extend(group.indexes)
    for group in groups[len(futs):]:  # never handed to the producer
        result.failed.extend(group.indexes)
    return split


def _build(
    producer: AIOKafkaProducer, partitions: tuple[int, ...], records: list[tuple[int, Record]], single: bool
) -> list[_Group]:
    groups: list[_Group] = []
    current: dict[int, _Group] = {}
    for i, (key, value) in records:
        part = _partition_for(key, partitions)
        group = current.get(part)
        if single or group is None or group.builder.append(key=key, value=value, timestamp=None) is None:
            group = current[part] = _Group(part, producer.create_batch())
            groups.append(group)
            group.builder.append(key=key, value=value, timestamp=None)  # a first record always fits
        group.indexes.append(i)
    return groups


def _settle(result: SendResult, group: _Group, fut: asyncio.Future[Any], pending: set[Any]) -> bool:
    """Record one batch's outcome; True when the broker refused it for good."""
    if fut in pending:
        fut.add_done_callback(_consume_exception)
        result.failed.extend(group.indexes)
        result.error = result.error or "DeliveryTimeout"
    elif (exc := fut.exception()) is None:
        result.delivered += len(group.indexes)
        result.acked.append((group.partition, fut.result().offset, group.indexes))
    elif isinstance(exc, PERMANENT_ERRORS):
        result.rejected += len(group.indexes)
        return True
    else:
        result.failed.extend(group.indexes)
        result.error = result.error or type(exc).__name__
    return False


async def close_producer(producer: AIOKafkaProducer, abandon: bool) -> None:
    """Stop the producer; with ``abandon`` fail what it still holds first (the spool has it).

    Never raises (but a cancellation of the caller): it runs in the delivery loop's ``finally``, where an
    exception would end the loop, and at stop, where it would skip spooling the batch in flight. aiokafka's
    sender can raise from its own bookkeeping here — a KeyError re-enqueueing a batch that ``fail_all``
    already removed, when the broker died with that batch in flight — which lost that batch once."""
    try:
        if abandon:
            acc = getattr(producer, "_message_accumulator", None)  # aiokafka 0.14 internals; else just wait
            if acc is not None:
                acc.fail_all(KafkaConnectionError("abandoned by the emitter"))
        async with asyncio.timeout(2.0):
            await producer.stop()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("producer did not close cleanly (%s: %s)", type(exc).__name__, exc)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
