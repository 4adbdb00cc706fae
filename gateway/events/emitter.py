"""Event emitter: bounded queue -> aiokafka producer -> ``gatewatch.events.v1``; disk spool on failure.

``emit()`` is synchronous and never raises or waits: it serializes the event and appends it to a deque.
One task (``_run``) owns the producer and moves records in order:

* live: wait up to ``linger_ms`` for a batch to fill, pop up to ``batch_max`` records, ``send()`` them,
  wait for every acknowledgement (acks=all);
* a delivery failure (error or timeout) puts the failed records and then the whole queue into the spool,
  in order, and from then on ``emit()`` appends to the spool directly (``_spooling``), so nothing newer
  overtakes anything older;
* a full queue also switches ``emit()`` to the spool; the queue still drains to Kafka first;
* while spooling, the task replays the spool oldest first, committing the spool cursor after each
  acknowledged batch; as soon as a read reaches the end of the spool (checked and switched without an
  await, so no ``emit()`` slips in between) ``emit()`` goes back to the queue, whose records are sent
  only after that last spool batch is acknowledged (so replay also finishes under steady load);
* when the broker is unreachable the task retries every ``retry_interval_s``; start() never waits for it;
* with ``retain_group`` set (the embedded default), every acknowledged event is also kept on disk until that
  group (the archiver) has committed past it, and a broker that comes back without acknowledged events
  (Tansu ``memory://`` after its process died) gets them again before anything newer (recovery.py).

Guarantee: at-least-once for everything handed to ``emit()`` unless it is counted in
``gatewatch_emitter_events_dropped_total`` (spool full, disk error, too large, rejected by the broker,
and, with retention, acknowledged then forgotten by the broker after retention had to release it).
Duplicates (a batch re-sent after a lost acknowledgement or a crash) carry the same event_id. A crash
(SIGKILL, OOM) loses the in-memory queue and up to ``fallback.SYNC_INTERVAL_S`` of unflushed spool writes.
Per-key order is kept except when a full queue spilled to the spool and the broker then failed while
the older queued records were still being sent: those land in the spool after the newer ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from gateway.config import EmitterConfig
from gateway.events import metrics as m
from gateway.events.connect import Connector
from gateway.events.delivery import MAX_REQUEST_BYTES, SendResult, close_producer, send_records
from gateway.events.fallback import Fallback
from gateway.events.recovery import OffsetWatch, Recovery
from gateway.events.segments import MAX_KEY_BYTES, Record
from gateway.events.spool import Spool
from schemas.config import KafkaConfig
from schemas.events import Event

log = logging.getLogger(__name__)

_RECORD_OVERHEAD = 128  # record batch framing, headers, timestamps


class EventEmitter:
    """Delivers events to Kafka without ever blocking or failing the caller. See the module docstring."""

    def __init__(self, kafka: KafkaConfig, cfg: EmitterConfig, spool_dir: Path) -> None:
        self._kafka = kafka
        self._cfg = cfg
        self._spool = Spool(spool_dir, cfg.spool_max_bytes, cfg.spool_segment_bytes)
        self._queue: collections.deque[Record] = collections.deque()
        self._inflight: list[Record] = []  # live batch sent but not yet acknowledged
        self._spooling = False  # emit() appends to the spool instead of the queue
        self._state = "new"  # new -> running -> stopping -> stopped
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._fb = Fallback(self._spool)
        self._recovery = Recovery(kafka, cfg, spool_dir, self._wakeup.set) if cfg.retain_group else None
        self._watch = OffsetWatch(kafka, cfg, self._recovery) if self._recovery is not None else None
        self._conn = Connector(kafka, cfg, self._watch)
        self._watcher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool and start delivering in the background; never waits for the broker."""
        if self._state != "new":
            return
        await asyncio.to_thread(self._spool.open)
        if self._recovery is not None:
            await self._recovery.open()
        if self._spool.pending:
            self._enter_spooling()  # older events first: replay the previous run's spool
        self._fb.update_gauge()
        self._state = "running"
        self._task = asyncio.create_task(self._run(), name="gatewatch-emitter")
        stores = (self._recovery.retention,) if self._recovery is not None else ()
        self._syncer = asyncio.create_task(self._fb.sync_loop(*stores), name="gatewatch-emitter-spool-sync")
        if self._watch is not None:
            self._watcher = asyncio.create_task(self._watch.run(), name="gatewatch-emitter-offsets")
        log.info("event emitter started (topic %s, spool %s)", self._kafka.topic, self._spool.directory)

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what the queue holds within ``timeout``, spool the rest, close. Idempotent."""
        if self._state in ("stopping", "stopped"):
            return
        was_running, self._state = self._state == "running", "stopping"
        self._stopping.set()
        self._wakeup.set()
        try:
            if self._task is not None:
                _done, pending = await asyncio.wait([self._task], timeout=timeout)
                if pending:
                    await _cancel(self._task)
            for task in (self._syncer, self._watcher):
                if task is not None:
                    await _cancel(task)
        finally:  # whatever the tasks did on their way out, what they held goes to the spool
            await self._close_stores(was_running)

    async def _close_stores(self, was_running: bool) -> None:
        if not was_running and self._queue:  # emitted before start(): keep them
            await asyncio.to_thread(self._spool.open)
        self._fb.append(self._inflight)
        self._inflight = []
        self._spool_queue()
        self._state = "stopped"
        if self._spool.opened:
            await asyncio.to_thread(self._spool.close)
        if self._recovery is not None:
            await asyncio.to_thread(self._recovery.close)
        self._fb.update_gauge()
        log.info("event emitter stopped (%d bytes left in the spool)", self._spool.pending_bytes)

    async def __aenter__(self) -> EventEmitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- request path ----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Hand one event over. Synchronous, O(1), never raises, never waits on Kafka."""
        m.EMITTED.inc()
        try:
            record = (event.tenant.encode(), event.to_json())
        except Exception as exc:  # noqa: BLE001 - the request path must never fail because of an event
            self._fb.drop("serialize", f"event serialization failed ({type(exc).__name__})")
            return
        key, value = record
        if len(key) + len(value) + _RECORD_OVERHEAD > MAX_REQUEST_BYTES or len(key) > MAX_KEY_BYTES:
            self._fb.drop("too_large", "event larger than the producer's max_request_size")
            return
        if self._state == "stopped":
            self._fb.drop("closed", "emit() after stop()")
            return
        if not self._spooling and len(self._queue) >= self._cfg.queue_max:
            log.warning("event queue full (%d), spooling to disk", self._cfg.queue_max)
            self._spooling = True
        if self._spooling:
            self._fb.append((record,))
            return
        self._queue.append(record)
        m.QUEUE_DEPTH.inc()
        self._wakeup.set()

    # -- delivery task ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            producer = await self._conn.connect()
            if producer is not None:
                ok = False
                try:
                    ok = await self._pump(producer)
                except Exception:
                    log.exception("emitter delivery loop failed; reconnecting")
                    m.DELIVERY_ERRORS.labels("internal").inc()
                    self._fb.append(self._inflight)
                    self._inflight = []
                    self._enter_spooling()
                finally:
                    await close_producer(producer, abandon=not ok)
                if ok:
                    return
                self._conn.set_up(False)
            self._enter_spooling()
            if self._state != "running":
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._cfg.retry_interval_s)
            if self._state != "running":
                return  # stopping while the broker is away: everything is in the spool already

    async def _pump(self, producer: AIOKafkaProducer) -> bool:
        """Move records until stopped (True) or a delivery fails (False)."""
        linger = self._cfg.linger_ms / 1000
        while True:
            recovering = await self._recover(producer)
            if recovering is not None:
                if not recovering:
                    return False
                if self._state != "running":
                    return True  # the replay spool keeps them for the next start
                continue
            if self._queue:
                if linger and len(self._queue) < self._cfg.batch_max and self._state == "running":
                    # let a batch fill a little: fewer, larger produce requests cost the loop less CPU
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(linger):  # not wait_for: 3.11's can swallow a cancel
                            await self._stopping.wait()
                if not await self._send_live(producer):
                    return False
            elif self._spooling:
                if self._state != "running":
                    return True  # the spool keeps them for the next start
                if not await self._replay_batch(producer):
                    return False
            elif self._state != "running":
                return True
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def _recover(self, producer: AIOKafkaProducer) -> bool | None:
        """After a broker lost acknowledged events: apply the reset, hold, resend (recovery.py).
        None when there is nothing to do; else whether the last step's delivery went through."""
        rec = self._recovery
        if rec is None:
            return None
        loop = asyncio.get_running_loop()
        if rec.reset_reason is not None:
            self._enter_spooling()  # no await before: nothing newer reaches the broker before the replay
            await rec.apply_reset(loop.time())
            return True
        if self._state == "running" and (wait := rec.hold_until - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stopping.wait()
            return True
        if rec.replay is None:
            return None
        if self._state != "running":
            return True
        return await rec.resend(lambda batch: self._send(producer, batch), self._cfg.batch_max,
                                lambda: self._fb.drop("corrupt", "corrupt retained records skipped"))

    async def _send_live(self, producer: AIOKafkaProducer) -> bool:
        n = min(len(self._queue), self._cfg.batch_max)
        batch = [self._queue.popleft() for _ in range(n)]
        m.QUEUE_DEPTH.dec(n)
        self._inflight = batch
        _, failed = await self._send(producer, batch)
        self._inflight = []
        if not failed:
            return True
        # no await from here on: the failed batch and the queue reach the spool before any newer emit()
        self._fb.append(failed)
        self._enter_spooling()
        return False

    async def _replay_batch(self, producer: AIOKafkaProducer) -> bool:
        records, skipped = self._spool.read(self._cfg.batch_max)
        if skipped:
            self._fb.drop("corrupt", "corrupt spool records skipped")
        if self._spool.read_to_end:
            # last spool batch: newer events may queue up behind it (no await since the read, so the
            # spool holds nothing newer); if it fails they are spooled after it, still in order
            self._spooling = False
        if records:
            delivered, failed = await self._send(producer, records)
            if failed:
                return False  # cursor not committed: the batch is read again (at-least-once)
            self._spool.commit()
            m.REPLAYED.inc(delivered)
        if not self._spooling and self._spool.reset():
            self._fb.warned.clear()
            log.info("spool replayed, back to live delivery")
        self._fb.update_gauge()
        return True

    async def _send(self, producer: AIOKafkaProducer, batch: list[Record]) -> tuple[int, list[Record]]:
        """Send and await acknowledgements: (delivered count, records to retry, in order)."""
        started = time.perf_counter()
        result = await send_records(producer, self._kafka.topic, batch, self._conn.timeout)
        m.SEND_SECONDS.observe(time.perf_counter() - started)
        m.DELIVERED.inc(result.delivered)
        self._retain(batch, result)
        if result.rejected:
            m.DROPPED.labels("rejected").inc(result.rejected)
            self._fb.warn_once("rejected", "broker rejected %d events for good", result.rejected)
        if result.failed:
            m.DELIVERY_ERRORS.labels(result.error or "unknown").inc()
            log.warning("delivery failed (%s): %d events to the spool", result.error, len(result.failed))
        return result.delivered, [batch[i] for i in result.failed]

    def _retain(self, batch: list[Record], result: SendResult) -> None:
        if self._recovery is not None:
            for partition, base, indexes in result.acked:
                self._recovery.acked(partition, base, [batch[i] for i in indexes])

    # -- helpers ---------------------------------------------------------------------------------
    def _enter_spooling(self) -> None:
        """From now on emit() appends to the spool; what the queue holds goes there first."""
        self._spooling = True
        self._spool_queue()

    def _spool_queue(self) -> None:
        if self._queue:
            m.QUEUE_DEPTH.dec(len(self._queue))
            self._fb.append(self._queue)
            self._queue.clear()

    @property
    def spooling(self) -> bool:
        return self._spooling

    @property
    def queue_depth(self) -> int:
        return len(self._queue)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it; an exception it ends with is logged, not raised (stop goes on)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled ourselves, not just the task
    except Exception:
        log.exception("emitter task %s failed while stopping", task.get_name())
