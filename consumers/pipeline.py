"""Pipelines: source -> scorers -> sink, offsets committed only after the sink wrote.

Lifecycle: ``start()`` starts downstream first (sink, scorers, source) and launches the run loop;
``stop()`` asks the source to stop taking batches, lets the batch in flight finish (score, write,
commit), then stops upstream first (source, scorers, sink). Both are idempotent.

Failures: a ``TransientError`` from a scorer, the sink or the commit is retried with backoff and jitter
while the source's partitions are paused (the group membership stays alive); nothing is committed until
the batch is written. Meanwhile ``health()`` says so (``paused``, the failing step and its error, since
when, the failures in a row; the worker's ``/healthz`` is then ``degraded``), every failure counts in
``gatewatch_consumer_retries_total`` (writes also in ``gatewatch_consumer_sink_failures_total``), and the
first failure and the recovery each log one line. A ``PermanentError`` is narrowed down to the events
that cause it, which are dead-lettered; the rest of the batch goes on. The loop never crash-loops on bad
input.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from consumers.contracts import PermanentError, Scorer, TableRows, TransientError
from consumers.metrics import ConsumerMetrics, default_metrics
from schemas.events import Event

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_iso(ts: float) -> str:
    """``time.time()`` as ISO-8601 UTC to the millisecond (``2026-12-03T16:34:23.042Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Failing:
    """A step that keeps failing transiently (its batch is retried, nothing committed meanwhile)."""

    step: str  # score, write or commit
    error: str  # ``Class: first line of the message``, at most 300 characters
    since: float  # time.time() of the first failure
    failures: int = 0  # in a row, the first included

    def health(self) -> dict[str, Any]:
        return {"error": f"{self.step} failing: {self.error}", "failing_since": utc_iso(self.since),
                "failing_for_s": round(time.time() - self.since, 1), "failures": self.failures}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: enough to dead-letter it unchanged."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    origin: Origin
    reason: str  # short machine-readable: invalid_json, invalid_event, scorer_rejected, sink_rejected
    error: str  # human-readable detail (never message text)


@dataclass(slots=True)
class Batch:
    events: list[Event]
    origins: list[Origin]  # parallel to events
    offsets: dict[Any, int]  # TopicPartition -> next offset to commit (last offset + 1)
    dead: list[DeadLetter] = field(default_factory=list)

    def reject(self, index: int, reason: str, error: str) -> None:
        self.dead.append(DeadLetter(self.origins[index], reason, error[:1000]))


class Source(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...  # idempotent; stops the consumer (after the last commit)
    def request_stop(self) -> None: ...  # batches() ends after the batch in flight
    def batches(self) -> AsyncIterator[Batch]: ...
    async def commit(self, batch: Batch) -> None: ...  # dead-letters batch.dead, then commits offsets
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def idle(self, seconds: float) -> None: ...  # wait while paused, keeping the group alive


class Sink(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def write(self, rows: TableRows) -> None: ...  # returns once written; Transient/PermanentError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.2
    max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.max_s, self.base_s * 2 ** min(attempt, 16))


class Pipeline:
    def __init__(self, name: str, source: Source, scorers: Sequence[Scorer], sink: Sink, *,
                 retry: RetryPolicy = RetryPolicy(), metrics: ConsumerMetrics | None = None) -> None:
        self.name = name
        self.source = source
        self.scorers = list(scorers)
        self.sink = sink
        self.retry = retry
        self.metrics = metrics or default_metrics()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._paused = False
        self._failing: Failing | None = None
        self.batches_done = 0

    async def start(self) -> None:
        """Sink, scorers, source, then the run loop. A start that raised may be called again: the parts
        that started stay started (their ``start`` is idempotent) and the failed one starts over."""
        if self._task is not None:
            return
        await self.sink.start()
        for scorer in self.scorers:
            await scorer.start()
        await self.source.start()
        self.metrics.paused.labels(self.name).set(0)
        self._task = asyncio.create_task(self._run(), name=f"pipeline-{self.name}")
        log.info("pipeline %s started", self.name)

    def health(self) -> dict[str, Any]:
        """``running``, ``paused``, ``batches``; while a step keeps failing also ``error``, ``failing_since``,
        ``failing_for_s`` and ``failures`` (in a row)."""
        running = self._task is not None and not self._task.done()
        out = {"running": running, "paused": self._paused, "batches": self.batches_done}
        failing = self._failing
        return out if failing is None else {**out, **failing.health()}

    async def wait(self) -> None:
        """Until the run loop ends (after ``stop()``, or with the exception that ended it)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self.source.request_stop()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("pipeline %s: batch not finished after %.0fs, cancelling", self.name, timeout)
                task.cancel()
                await asyncio.wait({task})
        if task is not None and not task.cancelled():
            task.exception()  # retrieved (it was logged by _run)
        await self.source.stop()
        for scorer in reversed(self.scorers):
            await scorer.stop()
        await self.sink.stop()
        log.info("pipeline %s stopped after %d batches", self.name, self.batches_done)

    async def _run(self) -> None:
        try:
            async for batch in self.source.batches():
                if batch.events or batch.dead:
                    await self.process(batch)
                if self._stopping:
                    break
        except Exception:
            log.exception("pipeline %s: run loop failed", self.name)
            raise

    async def process(self, batch: Batch) -> bool:
        """Score, write, commit one batch; False if stopped before it was committed."""
        started = time.perf_counter()
        rows = await self._retrying("score", lambda: self._score(batch))
        if rows is None or await self._retrying("write", lambda: self._write(batch, rows)) is None:
            return False
        if await self._retrying("commit", lambda: self._commit(batch)) is None:
            return False
        m, name = self.metrics, self.name
        m.batch_size.labels(name).observe(len(batch.events))
        m.batch_seconds.labels(name).observe(time.perf_counter() - started)
        m.events.labels(name).inc(len(batch.events))
        for table, table_rows in rows.items():
            m.rows_written.labels(name, table).inc(len(table_rows))
        self.batches_done += 1
        return True

    async def _retrying(self, step: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``fn`` until it succeeds, pausing the source while it fails; None if stopped meanwhile."""
        attempt = 0
        while True:
            try:
                result = await fn()
            except TransientError as exc:
                if step == "write":
                    self.metrics.sink_failures.labels(self.name, "transient").inc()
                self.metrics.retries.labels(self.name, step).inc()
                if attempt == 0:
                    log.warning("pipeline %s: %s failed (%s: %s), retrying", self.name, step,
                                type(exc).__name__, exc)
                    first_line = (str(exc).strip().splitlines() or [""])[0]
                    self._failing = Failing(step, f"{type(exc).__name__}: {first_line}"[:300], time.time())
                if self._failing is not None:
                    self._failing.failures = attempt + 1
                await self._set_paused(True)
                if self._stopping:
                    log.warning("pipeline %s: stopping with an uncommitted batch (redelivered later)", self.name)
                    return None
                await self.source.idle(self.retry.delay(attempt))
                attempt += 1
                continue
            await self._set_paused(False)
            if attempt:
                log.info("pipeline %s: %s recovered after %d retries", self.name, step, attempt)
                self._failing = None
            return result

    async def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        await (self.source.pause() if paused else self.source.resume())
        self.metrics.paused.labels(self.name).set(1 if paused else 0)

    async def _score(self, batch: Batch) -> TableRows:
        out: TableRows = {}
        for scorer in self.scorers:
            started = time.perf_counter()
            rows = await self._score_one(scorer, batch)
            self.metrics.scorer_seconds.labels(self.name, scorer.name).observe(time.perf_counter() - started)
            self.metrics.scored.labels(self.name, scorer.name).inc(len(batch.events))
            for table, table_rows in rows.items():
                out.setdefault(table, []).extend(table_rows)
        return out

    async def _score_one(self, scorer: Scorer, batch: Batch) -> TableRows:
        if not batch.events:
            return {}
        try:
            return await scorer.score(batch.events)
        except (TransientError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 -- PermanentError or a scorer bug: isolate the bad events
            log.warning("pipeline %s: scorer %s refused a batch (%s), scoring events one by one",
                        self.name, scorer.name, type(exc).__name__)
        out: TableRows = {}
        for i, event in enumerate(batch.events):
            try:
                rows = await scorer.score([event])
            except (TransientError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 -- dead-letter this event, keep the rest
                batch.reject(i, "scorer_rejected", f"{scorer.name}: {type(exc).__name__}: {exc}")
                continue
            for table, table_rows in rows.items():
                out.setdefault(table, []).extend(table_rows)
        return out

    async def _write(self, batch: Batch, rows: TableRows) -> bool:
        if not any(rows.values()):
            return True
        try:
            await self.sink.write(rows)
            return True
        except PermanentError as exc:
            self.metrics.sink_failures.labels(self.name, "permanent").inc()
            log.warning("pipeline %s: sink refused a batch (%s), writing event by event", self.name, exc)
        await self._write_isolating(batch, rows)
        return True

    async def _write_isolating(self, batch: Batch, rows: TableRows) -> None:
        per_event: dict[str, TableRows] = {}
        shared: TableRows = {}
        for table, table_rows in rows.items():
            for row in table_rows:
                key = row.get("event_id")
                target = per_event.setdefault(key, {}) if isinstance(key, str) else shared
                target.setdefault(table, []).append(row)
        for i, event in enumerate(batch.events):
            event_rows = per_event.pop(event.event_id, None)
            if event_rows is None:
                continue
            try:
                await self.sink.write(event_rows)
            except PermanentError as exc:
                batch.reject(i, "sink_rejected", str(exc))
        for table_rows in per_event.values():  # rows naming an event outside the batch
            for table, extra in table_rows.items():
                shared.setdefault(table, []).extend(extra)
        if any(shared.values()):
            try:
                await self.sink.write(shared)
            except PermanentError as exc:
                for table, table_rows in shared.items():
                    self.metrics.dropped_rows.labels(self.name, table).inc(len(table_rows))
                log.error("pipeline %s: dropped %d rows not tied to an event: %s", self.name,
                          sum(len(r) for r in shared.values()), exc)

    async def _commit(self, batch: Batch) -> bool:
        await self.source.commit(batch)
        return True
