"""``scores.scored_at`` is the time the score was written, not the time its batch began: through the
pipeline's ClickHouse sink, and through the scorer child's forwarding sink into the worker's warehouse."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from consumers.child.channel import Channel
from consumers.child.supervisor import ScorerProcess
from consumers.contracts import TableRows
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.scorers.common import RowMaker
from consumers.sinks.forward import ForwardingSink, ParentLink
from consumers.warehouse import Warehouse
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.consumers.conftest import make_event, make_pipeline, produce, rows_final, wait_until

pytestmark = pytest.mark.timeout(60)
SCORING_S = 1.0


class SlowScorer:
    """Takes ``SCORING_S`` per batch; rows from a RowMaker made when the batch begins."""

    name = "slow"

    def __init__(self) -> None:
        self.began: list[datetime] = []
        self.finished: list[datetime] = []

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def score(self, events: Sequence[Event]) -> TableRows:
        mk = RowMaker(self.name, "test", "sleep", "1")
        self.began.append(mk.scored_at)
        await asyncio.sleep(SCORING_S)
        self.finished.append(datetime.now(UTC))
        return {"scores": [mk.row(e, "length", "response", 1.0, "") for e in events]}


def _ms(t: datetime) -> datetime:
    """As DateTime64(3) stores it: truncated to the millisecond, naive UTC."""
    return t.astimezone(UTC).replace(tzinfo=None, microsecond=t.microsecond // 1000 * 1000)


def _scored_at(warehouse: Warehouse) -> list[datetime]:
    return [r[0] for r in warehouse.client.query("SELECT scored_at FROM gatewatch.scores").result_rows]


async def test_scored_at_is_stamped_after_scoring(kafka: KafkaConfig, warehouse: Warehouse,
                                                  metrics: ConsumerMetrics, started: list[Pipeline]) -> None:
    await produce(kafka, [make_event(i, tenant="acme") for i in range(5)])
    scorer = SlowScorer()
    pipeline = make_pipeline(kafka, warehouse, metrics, name="slow", scorers=[scorer], max_wait_ms=200)
    started.append(pipeline)
    await pipeline.start()
    await wait_until(lambda: _rows(warehouse, 5))
    stamps = await asyncio.to_thread(_scored_at, warehouse)
    assert len(scorer.finished) == 1 and scorer.finished[0] - scorer.began[0] >= timedelta(seconds=SCORING_S)
    assert min(stamps) >= _ms(scorer.finished[0]), (stamps, scorer.began, scorer.finished)


async def _rows(warehouse: Warehouse, n: int) -> bool:
    return await rows_final(warehouse, "scores") == n


async def test_forwarded_scores_are_stamped_when_the_worker_inserts(warehouse: Warehouse) -> None:
    ours, theirs = socket.socketpair()
    worker = ScorerProcess(["slow"], {}, warehouse=warehouse)  # its message loop, without a process
    serving = asyncio.create_task(worker._serve(await Channel.open(ours)))
    child = await Channel.open(theirs)
    link = ParentLink(child)
    reading = asyncio.create_task(link.run())
    try:
        mk = RowMaker("slow", "test", "sleep", "1")
        rows = [mk.row(make_event(i), "length", "response", 1.0, "") for i in range(3)]
        await asyncio.sleep(0.2)  # the batch's scoring time
        before_write = datetime.now(UTC)
        await ForwardingSink(link, "slow").write({"scores": rows})
        stamps = await asyncio.to_thread(_scored_at, warehouse)
        assert len(stamps) == 3 and min(stamps) >= _ms(before_write) > _ms(mk.scored_at), stamps
    finally:
        await child.close()
        await asyncio.wait_for(serving, 10)
        reading.cancel()
