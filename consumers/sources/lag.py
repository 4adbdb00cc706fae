"""Consumer lag of one Kafka source: messages of its assigned partitions not yet processed (committed).

Per partition, ``lag = end - done`` (never below 0), summed into ``gatewatch_consumer_lag{pipeline}``:

- ``done``: the offset this source last committed; else the first offset it fetched since the partition
  was assigned (the batch in flight counts as behind); else the consumer's position (where it starts).
- ``end``: the largest of the highwater of the last fetch response, the broker's end offset
  (``end_offsets``, asked on each refresh), the next offset after what was fetched, and ``done``.
  Neither source is enough alone: aiokafka does not fetch a partition again while records it fetched
  are still waiting to be taken (a batch stuck in a scorer), so the highwater goes stale; and Tansu 0.6
  answers the end-offset lookup with the *last record batch's base offset* + 1 (measured: 7 for a
  partition holding 12 records), i.e. too low whenever the last batch held several records. The maximum
  is exact against Kafka and a lower bound against Tansu that still rises as soon as anything arrives.

``LagWatch`` refreshes the gauge about every ``interval_s`` and right after each commit (``poke``), from
a task of its own, so a pipeline stuck in a long batch shows its lag growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

log = logging.getLogger(__name__)


class LagTracker:
    """What this source has fetched and committed, per partition since its assignment."""

    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}
        self._first: dict[TopicPartition, int] = {}  # first offset fetched since the assignment
        self._next: dict[TopicPartition, int] = {}  # next offset after the last one fetched

    def fetched(self, tp: TopicPartition, first: int, last: int) -> None:
        self._first.setdefault(tp, first)
        self._next[tp] = max(self._next.get(tp, 0), last + 1)

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked: their next owner commits, what we knew is stale."""
        for tp in tps:
            self.committed.pop(tp, None)
            self._first.pop(tp, None)
            self._next.pop(tp, None)

    async def lag(self, consumer: AIOKafkaConsumer, timeout_s: float) -> int:
        tps = list(consumer.assignment())
        ends: dict[TopicPartition, int] = {}
        if tps:
            try:
                async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancel (3.11)
                    ends = await consumer.end_offsets(tps)
            except (KafkaError, TimeoutError) as exc:  # the highwater alone, this time
                log.debug("end offsets unavailable: %r", exc)
        total = 0
        for tp in tps:
            done = await self._done(consumer, tp, timeout_s)
            if done is None or tp not in consumer.assignment():  # revoked meanwhile
                continue
            high = max(x for x in (consumer.highwater(tp), ends.get(tp), self._next.get(tp), done) if x is not None)
            total += high - done
        return total

    async def _done(self, consumer: AIOKafkaConsumer, tp: TopicPartition, timeout_s: float) -> int | None:
        done = self.committed.get(tp, self._first.get(tp))
        if done is not None:
            return done
        try:
            async with asyncio.timeout(timeout_s):
                return int(await consumer.position(tp))
        except (IllegalStateError, TimeoutError, KafkaError):  # revoked, or no position yet
            return None


class LagWatch:
    """Sets ``gauge`` from ``tracker`` every ``interval_s`` and on ``poke()``, while started."""

    def __init__(self, name: str, tracker: LagTracker, gauge: Any, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError("lag interval must be positive")
        self.name = name
        self.tracker = tracker
        self.gauge = gauge  # the pipeline's child of gatewatch_consumer_lag
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, consumer: AIOKafkaConsumer) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(consumer), name=f"lag-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def poke(self) -> None:
        self._wake.set()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self.gauge.set(await self.tracker.lag(consumer, timeout_s=max(self.interval_s, 1.0)))
            except KafkaError as exc:
                log.debug("%s: lag not updated: %r", self.name, exc)
