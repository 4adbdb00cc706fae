"""Kafka source: one aiokafka consumer group per pipeline, manual commits only.

- Batches by count and time: records are gathered with ``getmany(max_records=..., timeout_ms=...)`` until
  ``max_records`` or ``max_wait_ms`` after the first record, whichever comes first, or a stop request:
  the wait is cut short and the records gathered so far make the last batch (written, then committed).
- Every message is validated with ``Event.model_validate_json``; one that does not validate is
  dead-lettered (``dead_letter=True``: produced unchanged to the DLQ topic, reason in headers) or only
  counted (``dead_letter=False``: another pipeline of the same worker owns the DLQ), and committed.
- ``commit`` sends the batch's dead letters, then commits ``{tp: last_offset + 1}`` per partition.
  A commit lost to a rebalance is counted and dropped (the batch is redelivered, rows are idempotent).
- ``pause``/``idle``/``resume``: while the sink fails the pipeline holds its batch with every partition
  paused and keeps polling (which returns nothing), so the group membership stays alive.
- ``start`` is bounded by ``start_timeout_s`` (a frozen broker makes aiokafka's start wait indefinitely)
  and closes what it opened when it fails, so the pipeline's start can be retried (``consumers/startup.py``);
  ``TopicsReady`` creates the topics as the first step of each process's start attempts.
- ``gatewatch_consumer_lag`` is refreshed about every ``lag_interval_s`` and after each commit, also while
  a batch is stuck in a scorer or the sink (``lag.py``).
- A partition whose log end (the fetch highwater) went down, or lies before this source's position when
  first seen, was emptied under it (the embedded broker, Tansu ``memory://``, restarted: it answers a fetch
  past the end with no records, not OFFSET_OUT_OF_RANGE, and accepts commits of old-log offsets). The
  source rewinds it as Kafka's reset would (``auto_offset_reset``: earliest -> offset 0) and does not commit
  old-log offsets into the new log, so the events the gateway sends again (gateway/events/recovery.py) are
  read, not skipped. (Only a drop counts once the end was seen: Tansu's highwater can lag the records it
  serves for a moment after a restart.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from consumers.contracts import TransientError
from consumers.metrics import ConsumerMetrics, default_metrics
from consumers.pipeline import Batch, DeadLetter, Origin
from consumers.sources.lag import LagTracker, LagWatch
from schemas.config import KafkaConfig
from schemas.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KafkaSourceConfig:
    group_id: str
    max_records: int = 500
    max_wait_ms: int = 1000
    dead_letter: bool = True
    auto_offset_reset: str = "earliest"
    lag_interval_s: float = 1.0  # how often gatewatch_consumer_lag is refreshed (and after each commit)
    start_timeout_s: float = 30.0  # start() gives up (TransientError) when the broker takes longer
    # passed to AIOKafkaConsumer as is (session_timeout_ms, heartbeat_interval_ms, fetch_max_bytes, ...)
    consumer_options: dict[str, Any] = field(default_factory=dict)


def kafka_client_options(cfg: KafkaConfig) -> dict[str, Any]:
    if not cfg.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is not set")
    opts: dict[str, Any] = {"bootstrap_servers": cfg.bootstrap_servers, "client_id": cfg.client_id,
                            "request_timeout_ms": cfg.request_timeout_ms,
                            "security_protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        opts.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                    sasl_plain_password=cfg.sasl_password)
    return opts


async def ensure_topics(cfg: KafkaConfig) -> list[str]:
    """Create the events and DLQ topics when missing; return the names created."""
    admin = AIOKafkaAdminClient(**kafka_client_options(cfg))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in (cfg.topic, cfg.dlq_topic) if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, cfg.partitions, cfg.replication_factor) for t in missing])
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
        return missing
    finally:
        await admin.close()


class TopicsReady:
    """``ensure_topics`` as the first step of every pipeline start attempt in a process, done once: the
    first attempt that gets through creates the topics, later ones return at once. Bounded by
    ``timeout_s`` (a frozen broker accepts connections and then answers nothing); a timeout is a
    ``TransientError``, so the start is retried like any other broker outage."""

    def __init__(self, cfg: KafkaConfig, timeout_s: float) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s
        self._done = False
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if self._done:
            return
        async with self._lock:
            if self._done:
                return
            try:
                async with asyncio.timeout(self.timeout_s):
                    created = await ensure_topics(self.cfg)
            except TimeoutError:
                raise TransientError(f"the broker did not answer within {self.timeout_s:g}s "
                                     "(creating topics)") from None
            if created:
                log.info("created topics %s", ", ".join(created))
            self._done = True


def parse(record: ConsumerRecord[bytes, bytes]) -> Event | DeadLetter:
    origin = Origin(record.topic, record.partition, record.offset, record.key, record.value)
    if record.value is None:
        return DeadLetter(origin, "invalid_json", "empty message value")
    try:
        return Event.model_validate_json(record.value)
    except ValidationError as exc:
        reason = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_event"
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        return DeadLetter(origin, reason, detail[:1000])


def dead_letter_headers(dead: DeadLetter, pipeline: str) -> list[tuple[str, bytes]]:
    o = dead.origin
    return [("gatewatch-dlq-reason", dead.reason.encode()), ("gatewatch-dlq-error", dead.error.encode()),
            ("gatewatch-dlq-pipeline", pipeline.encode()), ("gatewatch-source-topic", o.topic.encode()),
            ("gatewatch-source-partition", str(o.partition).encode()),
            ("gatewatch-source-offset", str(o.offset).encode())]


class _Repause(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keep newly assigned partitions paused while the pipeline holds a batch."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.source.lag.forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: assigned %d partitions", self.source.name, len(assigned))
        if self.source.paused and self.source.consumer is not None and assigned:
            self.source.consumer.pause(*assigned)


class KafkaSource:
    def __init__(self, name: str, kafka: KafkaConfig, cfg: KafkaSourceConfig, *,
                 metrics: ConsumerMetrics | None = None) -> None:
        self.name = name
        self.kafka = kafka
        self.cfg = cfg
        self.metrics = metrics or default_metrics()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.paused = False
        self._stopping = False
        self._stop_requested = asyncio.Event()  # wakes a getmany waiting out the batch window
        self.lag = LagTracker()
        # highest fetch highwater seen per partition, kept across rebalances: a log's end never goes down
        # unless the log was lost (then the partition is rewound and this starts again)
        self.ends: dict[TopicPartition, int] = {}
        self._lag_watch = LagWatch(name, self.lag, self.metrics.lag.labels(name), cfg.lag_interval_s)

    async def start(self) -> None:
        """Connect (DLQ producer first, then the consumer), within ``start_timeout_s``: against a frozen
        broker (SIGSTOPped, hung) aiokafka's start waits for the group coordinator indefinitely. A start
        that fails, times out or is cancelled closes what it opened, so it may simply be called again."""
        if self.consumer is not None:
            return
        try:
            async with asyncio.timeout(self.cfg.start_timeout_s):
                await self._connect()
        except BaseException as exc:
            await self._close_clients()
            if isinstance(exc, TimeoutError):
                raise TransientError(f"the broker did not answer within {self.cfg.start_timeout_s:g}s") from None
            raise
        self._lag_watch.start(self.consumer)
        log.info("%s: consuming %s as group %s", self.name, self.kafka.topic, self.cfg.group_id)

    async def _connect(self) -> None:
        opts = kafka_client_options(self.kafka)
        if self.cfg.dead_letter:  # downstream first
            self.producer = AIOKafkaProducer(**opts, acks="all")
            await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **opts, group_id=self.cfg.group_id, enable_auto_commit=False,
            auto_offset_reset=self.cfg.auto_offset_reset, **self.cfg.consumer_options)
        self.consumer.subscribe([self.kafka.topic], listener=_Repause(self))
        await self.consumer.start()

    async def _close_clients(self) -> None:
        consumer, self.consumer = self.consumer, None
        producer, self.producer = self.producer, None
        if consumer is not None:  # upstream first
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    def request_stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()

    async def stop(self) -> None:
        self.request_stop()
        await self._lag_watch.stop()
        await self._close_clients()

    async def batches(self) -> AsyncIterator[Batch]:
        while not self._stopping:
            batch = await self._gather()
            if batch.offsets:
                yield batch

    async def _gather(self) -> Batch:
        consumer = self._require()
        batch = Batch(events=[], origins=[], offsets={})
        count, deadline = 0, None
        loop = asyncio.get_running_loop()
        while count < self.cfg.max_records and not self._stopping:
            await self._rewind_emptied(consumer)
            remaining = self.cfg.max_wait_ms if deadline is None else int((deadline - loop.time()) * 1000)
            if remaining <= 0:
                break
            try:
                data = await self._getmany(consumer, remaining, self.cfg.max_records - count)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                log.warning("%s: fetch failed (%r), retrying", self.name, exc)
                await asyncio.sleep(0.5)
                break
            for tp, records in data.items():
                for record in records:
                    self._add(batch, record)
                batch.offsets[tp] = records[-1].offset + 1
                self.lag.fetched(tp, records[0].offset, records[-1].offset)
                count += len(records)
            if count and deadline is None:
                deadline = loop.time() + self.cfg.max_wait_ms / 1000
            if not count:
                break  # idle: hand control back so a stop request is seen
        return batch

    async def _getmany(self, consumer: AIOKafkaConsumer, timeout_ms: int,
                       max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """``getmany``, returning early (empty) on a stop request. Cancelling it loses nothing: aiokafka
        hands records over (and advances the position) without awaiting; a result that raced the stop
        request is kept."""
        if self._stop_requested.is_set():
            return {}
        fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=timeout_ms, max_records=max_records))
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.wait({fetch})
        return {} if fetch.cancelled() else fetch.result()

    async def _rewind_emptied(self, consumer: AIOKafkaConsumer) -> None:
        """Rewind partitions whose log was emptied under this source (see the module docstring); their
        records already in this batch are still written, but not committed (``commit``)."""
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            seen = self.ends.get(tp)
            if seen is None:
                try:
                    async with asyncio.timeout(0.1):
                        behind = await consumer.position(tp) > end
                except (TimeoutError, IllegalStateError):
                    continue
            else:
                behind = end < seen
            if not behind:
                self.ends[tp] = max(end, seen or 0)
                continue
            log.warning("%s: %s now ends at offset %d, before what we read: the broker lost its log; "
                        "re-reading it from the %s", self.name, tp, end,
                        "end" if self.cfg.auto_offset_reset == "latest" else "start")
            consumer.seek(tp, end if self.cfg.auto_offset_reset == "latest" else 0)
            self.lag.forget([tp])
            self.ends.pop(tp, None)

    def _emptied(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
        """Committing ``offset`` would put an old-log position into a log that was emptied meanwhile."""
        if tp not in consumer.assignment() or (end := consumer.highwater(tp)) is None or offset <= end:
            return False
        seen = self.ends.get(tp)
        return seen is None or end < seen

    def _add(self, batch: Batch, record: ConsumerRecord[bytes, bytes]) -> None:
        parsed = parse(record)
        if isinstance(parsed, DeadLetter):
            batch.dead.append(parsed)
        else:
            batch.events.append(parsed)
            batch.origins.append(Origin(record.topic, record.partition, record.offset, record.key, record.value))

    async def commit(self, batch: Batch) -> None:
        await self._dead_letter(batch.dead)
        consumer = self._require()
        offsets = {tp: off for tp, off in batch.offsets.items()
                   if off > self.lag.committed.get(tp, -1) and not self._emptied(consumer, tp, off)}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self.metrics.commit_failures.labels(self.name).inc()
            log.warning("%s: commit lost to a rebalance (%s); the batch will be redelivered", self.name, exc)
            return
        except KafkaError as exc:
            if exc.retriable:
                raise TransientError(f"commit failed: {exc!r}") from exc
            raise
        self.lag.commit(offsets)
        self._lag_watch.poke()

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        if self.producer is not None:
            try:
                futures = [await self.producer.send(self.kafka.dlq_topic, value=d.origin.value,
                                                    key=d.origin.key, headers=dead_letter_headers(d, self.name))
                           for d in dead]
                await asyncio.gather(*futures)
            except KafkaError as exc:
                raise TransientError(f"dead-letter produce failed: {exc!r}") from exc
        for reason in {d.reason for d in dead}:
            self.metrics.dead_lettered.labels(self.name, reason).inc(sum(d.reason == reason for d in dead))
        dead.clear()  # done: a retried commit must not send them again

    async def pause(self) -> None:
        self.paused = True
        if self.consumer is not None:
            self.consumer.pause(*self.consumer.assignment())

    async def resume(self) -> None:
        self.paused = False
        if self.consumer is not None:
            self.consumer.resume(*self.consumer.assignment())

    async def idle(self, seconds: float) -> None:
        """Poll paused partitions for ``seconds`` (keeps ``max_poll_interval`` happy); records that slip
        through (a partition assigned unpaused) are un-read by seeking back to them."""
        consumer = self._require()
        consumer.pause(*consumer.assignment())
        data = await self._getmany(consumer, max(1, int(seconds * 1000)))
        for tp, records in data.items():
            consumer.seek(tp, records[0].offset)

    def _require(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError(f"{self.name}: source not started")
        return self.consumer
