"""Recovery from a broker that forgot acknowledged events (the embedded Tansu broker, ``memory://``).

Owned by the emitter when ``EmitterConfig.retain_group`` is set. Three parts:

* ``Retention`` (retention.py): every acknowledged event, on disk, with its partition and offset, until
  the group (the archiver) has committed past it.
* Reset detection — the broker's log for a partition now ends at or before the base offset of the last
  batch it acknowledged to us (Tansu answers end-offset lookups with the last batch's base + 1, Kafka with
  the true end: the test holds for both), the partition is gone, or an acknowledgement's offset is not
  above the previous one's. Checked at every connect and every ``retain_poll_s`` (``OffsetWatch``),
  and on every acknowledgement.
* On a reset (``apply_reset``, run by the delivery task between batches): the acknowledged events that are
  no longer retained and that the group had not committed are lost for good — counted in
  ``gatewatch_emitter_events_dropped_total{reason="broker_lost"}`` and logged as an error; the retained
  ones move to a replay spool (``<spool>/replay``) that the emitter sends before anything else. For
  ``reset_hold_s`` first nothing is sent at all (``emit()`` spools): consumers still positioned in the old
  log must see the new, shorter one and rewind (``consumers/sources/kafka.py``) before it grows past their
  old positions again, or they would skip the replayed events.

Committed offsets are trusted only when they are not beyond what this gateway knows the log holds, and a
value that was beyond it after a reset (a consumer committing an old-log position into the new log) stays
distrusted until it changes. Everything here runs on the event loop; blocking file work is in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gateway.config import EmitterConfig
from gateway.events import metrics as m
from gateway.events.retention import Retention, strip_meta
from gateway.events.segments import Record, segment_ids
from gateway.events.spool import Spool
from gateway.events.topics import client_kwargs, ensure_topic
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)

_NO_LIMIT = 1 << 62
Send = Callable[[list[Record]], Awaitable[tuple[int, list[Record]]]]  # (delivered, failed), as EventEmitter._send


class Recovery:
    """Retention, reset detection and the replay of lost events. See the module docstring."""

    def __init__(self, kafka: KafkaConfig, cfg: EmitterConfig, spool_dir: Path, wake: Callable[[], None]) -> None:
        self.kafka = kafka
        self.topic = kafka.topic
        self._wake = wake  # the delivery task applies a detected reset: wake it if it is idle
        self.cfg = cfg
        self.retention = Retention(spool_dir / "retained", cfg.retain_max_bytes, cfg.spool_segment_bytes)
        self.replay_dir = spool_dir / "replay"
        self.replay: Spool | None = None  # open while it holds events to send again
        self.committed: dict[int, int] = {}  # the group's trusted committed offsets, current log
        self._distrust: dict[int, int] = {}  # partition -> committed value known to belong to a lost log
        self.epoch = 0  # bumped by every reset: answers to requests sent before it are ignored
        self.reset_reason: str | None = None  # set when a reset was detected, cleared by apply_reset
        self._after_reset: list[tuple[int, int, list[Record]]] = []  # acked by the new log before apply
        self.hold_until = 0.0
        self._unretained_seen = 0

    async def open(self) -> None:
        if self.cfg.retain_max_bytes:
            await asyncio.to_thread(self.retention.open)
        if self.replay_dir.exists():
            await self._open_replay()

    def close(self) -> None:
        """Blocking (run it in a thread)."""
        if self.retention.opened:
            self.retention.close()
        if self.replay is not None and self.replay.opened:
            self.replay.close()

    # -- delivery task ---------------------------------------------------------------------------
    def acked(self, partition: int, base: int, records: list[Record]) -> None:
        """One batch acknowledged at ``base``: retain it (or hold it back for the new log)."""
        if self.reset_reason is None and base <= self.retention.last_base.get(partition, -1):
            self.detected(f"partition {partition} acknowledged offset {base}, not above the previous "
                          f"batch's {self.retention.last_base[partition]}")
        if self.reset_reason is not None:
            self._after_reset.append((partition, base, records))
            return
        self.retention.add(partition, base, records)
        self._count_unretained()
        m.RETAINED_BYTES.set(self.retention.disk_bytes)

    def detected(self, reason: str) -> None:
        if self.reset_reason is None:
            self.reset_reason = reason
            self.epoch += 1
            self._wake()

    async def apply_reset(self, now: float) -> None:
        """Count what is lost, hand the retained events to the replay spool, start the hold."""
        reason, self.reset_reason = self.reset_reason, None
        lost = self.retention.unretained_from(self.committed)
        m.LOG_RESETS.inc()
        if lost:
            m.DROPPED.labels("broker_lost").inc(lost)
            log.error("broker lost %d acknowledged events of %s that %s had not committed and the gateway no "
                      "longer retained (%s); see gatewatch_emitter_events_unretained_total",
                      lost, self.topic, self.cfg.retain_group, reason)
        if self.replay is not None:
            await asyncio.to_thread(self.replay.close)
            self.replay = None
        moved = self.retention.detach(self.replay_dir, _next_segment_id(self.replay_dir))
        log.warning("broker came back without acknowledged events (%s): %d retained segments to send again "
                    "after %.1fs", reason, moved, self.cfg.reset_hold_s)
        self._distrust.update(self.committed)
        self.committed = {}
        for partition, base, records in self._after_reset:
            self.retention.add(partition, base, records)
        self._after_reset.clear()
        self._count_unretained()
        m.RETAINED_BYTES.set(self.retention.disk_bytes)
        await self._open_replay()
        await self._recreate_topic()
        self.hold_until = now + self.cfg.reset_hold_s

    async def _recreate_topic(self) -> None:
        """A restarted Tansu knows no topics; the first client to name one auto-creates it (4 partitions), and
        producing into a topic while it is being auto-created can leave it inconsistent. Create it as
        configured now, before anything is sent (best effort: the next connect tries again)."""
        try:
            async with asyncio.timeout(self.kafka.request_timeout_ms / 1000 + 1.0):
                await ensure_topic(self.kafka)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("could not re-create topic %s after the reset (%s)", self.topic, type(exc).__name__)

    async def _open_replay(self) -> None:
        spool = Spool(self.replay_dir, _NO_LIMIT, self.cfg.spool_segment_bytes)
        await asyncio.to_thread(spool.open)
        self.replay = spool if spool.pending else None
        if self.replay is None:
            await asyncio.to_thread(spool.close)

    async def resend(self, send: Send, batch_max: int, on_corrupt: Callable[[], None]) -> bool:
        """Send the replay spool's next batch (oldest first); False when the delivery failed."""
        replay = self.replay
        if replay is None:
            return True
        records, skipped = replay.read(batch_max)
        if skipped:
            on_corrupt()
        if records:
            delivered, failed = await send([strip_meta(r)[2] for r in records])
            if failed:
                return False  # cursor not committed: the batch is read again
            replay.commit()
            m.RESENT.inc(delivered)
        if replay.read_to_end and replay.reset():
            await asyncio.to_thread(replay.close)
            self.replay = None
            log.info("every retained event the broker had lost was sent again")
        return True

    # -- offsets (OffsetWatch) -------------------------------------------------------------------
    def check_ends(self, epoch: int, snapshot: dict[int, int], ends: dict[int, int]) -> None:
        """``snapshot``: last acknowledged base offsets taken before the end offsets were asked."""
        if epoch != self.epoch or self.reset_reason is not None:
            return
        behind = sorted(p for p, base in snapshot.items() if ends.get(p, -1) <= base)
        if behind:
            self.detected(f"log of partitions {behind} ends at or before the last batch acknowledged to us")

    def observe_committed(self, epoch: int, committed: dict[int, int]) -> None:
        if epoch != self.epoch or self.reset_reason is not None:
            return
        for partition, offset in committed.items():
            if offset < 0:
                continue
            if offset > self.retention.last_offset.get(partition, -1) + 1:
                if self.epoch:  # after a reset: an old-log position committed into the new log
                    self._distrust.setdefault(partition, offset)
                continue
            if self._distrust.get(partition) == offset:
                continue
            self._distrust.pop(partition, None)
            self.committed[partition] = offset
        if self.retention.trim(self.committed):
            m.RETAINED_BYTES.set(self.retention.disk_bytes)

    def _count_unretained(self) -> None:
        if self.retention.evicted > self._unretained_seen:
            if not self._unretained_seen:
                log.warning("retention %s: delivered events released before %s committed them (retain_max_bytes "
                            "%d reached or 0); a broker that forgets them now loses them",
                            self.retention.directory, self.cfg.retain_group, self.cfg.retain_max_bytes)
            m.UNRETAINED.inc(self.retention.evicted - self._unretained_seen)
            self._unretained_seen = self.retention.evicted


def _next_segment_id(directory: Path) -> int:
    """An id above every segment in ``directory`` and its replay cursor (so the spool's open keeps them)."""
    ids = segment_ids(directory) if directory.exists() else []
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        ids.append(int((directory / "cursor").read_text().split()[0]))
    return max(ids, default=-1) + 1


class OffsetWatch:
    """Every ``retain_poll_s``: the topic's partitions and end offsets (reset detection) and the group's
    committed offsets (releasing retained events). Its own clients; every call bounded; errors retried."""

    def __init__(self, kafka: KafkaConfig, cfg: EmitterConfig, recovery: Recovery) -> None:
        self.kafka = kafka
        self.cfg = cfg
        self.recovery = recovery
        self._timeout = kafka.request_timeout_ms / 1000 + 1.0
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._failing = False
        self._lock = asyncio.Lock()  # the emitter's connect probes too

    async def run(self) -> None:
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.cfg.retain_poll_s)
        finally:
            await self.close()

    async def poll(self) -> bool:
        """One round; False (logged once per episode) when the broker did not answer."""
        try:
            async with self._lock, asyncio.timeout(self._timeout):
                await self._poll()
        except (KafkaError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.info("retention: offsets not readable (%s), retrying", type(exc).__name__)
            self._failing = True
            await self.close()
            return False
        self._failing = False
        return True

    async def _poll(self) -> None:
        rec = self.recovery
        epoch, snapshot = rec.epoch, dict(rec.retention.last_base)
        consumer, admin = await self._clients()
        cluster = await consumer._client.fetch_all_metadata()  # fresh, all topics (never auto-creates one)
        partitions = sorted(cluster.partitions_for_topic(self.kafka.topic) or ())
        tps = [TopicPartition(self.kafka.topic, p) for p in partitions]
        ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()} if tps else {}
        rec.check_ends(epoch, snapshot, ends)
        if tps and self.cfg.retain_group:
            offsets = await admin.list_consumer_group_offsets(self.cfg.retain_group, partitions=tps)
            rec.observe_committed(epoch, {tp.partition: om.offset for tp, om in offsets.items()})

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**client_kwargs(self.kafka), enable_auto_commit=False)
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        if self._admin is None:
            admin = AIOKafkaAdminClient(**client_kwargs(self.kafka))
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._consumer, self._admin

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        for closing in (consumer.stop() if consumer else None, admin.close() if admin else None):
            if closing is not None:
                with contextlib.suppress(KafkaError, OSError):
                    await closing
