"""Pipeline name -> factory. Each pipeline consumes in its own consumer group:
``gatewatch-archiver`` for the archiver, ``gatewatch-scorer-<name>`` for each scorer.

Scorer pipelines take their scorer from ``consumers.scorers.SCORER_FACTORIES`` (imported lazily, so a
worker without the scoring stack still runs the archiver).

Each pipeline writes through ``PipelineContext.sink(name)``: a ``ClickHouseSink`` on the warehouse, or
what ``sink_factory`` makes (the scorer child process forwards its writes to the worker, ``consumers/child``).
A scorer that keeps state in the warehouse (drift baselines) reads it through
``PipelineContext.warehouse_reads()``: ``reads`` when given (the chdb scorer child asks the worker), else
one ``LocalReads`` per pipeline on the warehouse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consumers.archiver import EventsArchiver
from consumers.config import ARCHIVER, WorkerConfig
from consumers.contracts import Scorer
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline, RetryPolicy, Sink
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.sources.kafka import KafkaSource, KafkaSourceConfig
from consumers.warehouse import Warehouse
from schemas.config import KafkaConfig

if TYPE_CHECKING:
    from consumers.scorers.reads import WarehouseReads

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineContext:
    kafka: KafkaConfig
    worker: WorkerConfig
    warehouse: Warehouse | None  # None only with a sink_factory
    metrics: ConsumerMetrics
    dlq_owner: str  # the one pipeline of this worker that produces invalid messages to the DLQ
    sink_factory: Callable[[str], Sink] | None = None  # pipeline name -> its sink (default: ClickHouseSink)
    reads: WarehouseReads | None = None  # scorers' warehouse reads (default: LocalReads on the warehouse)

    def sink(self, name: str) -> Sink:
        if self.sink_factory is not None:
            return self.sink_factory(name)
        if self.warehouse is None:
            raise ValueError("a pipeline context needs a warehouse or a sink factory")
        return ClickHouseSink(self.warehouse.new_client, max_rows_per_insert=self.worker.max_rows_per_insert)

    def warehouse_reads(self) -> WarehouseReads | None:
        if self.reads is not None or self.warehouse is None:
            return self.reads
        from consumers.scorers.reads import LocalReads

        return LocalReads(self.warehouse.new_client)


PipelineFactory = Callable[[PipelineContext], Pipeline]


def group_id(name: str) -> str:
    return "gatewatch-archiver" if name == ARCHIVER else f"gatewatch-scorer-{name}"


def dlq_owner(pipelines: tuple[str, ...] | list[str]) -> str:
    """Every pipeline sees an invalid message; only one dead-letters it (the archiver when it runs)."""
    return ARCHIVER if ARCHIVER in pipelines else pipelines[0]


def _pipeline(name: str, ctx: PipelineContext, stages: list[Scorer]) -> Pipeline:
    batch = ctx.worker.batch_for(name)
    source = KafkaSource(name, ctx.kafka, KafkaSourceConfig(
        group_id=group_id(name), max_records=batch.max_records, max_wait_ms=batch.max_wait_ms,
        dead_letter=name == ctx.dlq_owner, lag_interval_s=ctx.worker.lag_interval_s,
        start_timeout_s=ctx.worker.start_timeout_s, consumer_options=ctx.worker.consumer_options()),
        metrics=ctx.metrics)
    retry = RetryPolicy(ctx.worker.retry_base_s, ctx.worker.retry_max_s)
    return Pipeline(name, source, stages, ctx.sink(name), retry=retry, metrics=ctx.metrics)


def archiver_pipeline(ctx: PipelineContext) -> Pipeline:
    return _pipeline(ARCHIVER, ctx, [EventsArchiver()])


def scorer_pipeline_factory(name: str) -> PipelineFactory:
    def build(ctx: PipelineContext) -> Pipeline:
        from consumers.scorers import SCORER_FACTORIES

        return _pipeline(name, ctx, [SCORER_FACTORIES[name](ctx.worker.scorers, reads=ctx.warehouse_reads())])

    return build


def pipeline_factories() -> dict[str, PipelineFactory]:
    factories: dict[str, PipelineFactory] = {ARCHIVER: archiver_pipeline}
    try:
        from consumers.scorers import SCORER_FACTORIES
    except ImportError:
        return factories
    factories.update({name: scorer_pipeline_factory(name) for name in SCORER_FACTORIES})
    return factories


def build_pipelines(ctx: PipelineContext, names: Sequence[str] | None = None,
                    ) -> tuple[list[Pipeline], dict[str, str]]:
    """The configured pipelines (or ``names`` of them), and name -> error for those that cannot be built
    in this install (scoring stack missing): the worker runs the rest and reports these on ``/healthz``."""
    factories = pipeline_factories()
    built, failed = [], {}
    for name in ctx.worker.pipelines if names is None else names:
        if name not in factories:
            failed[name] = "not available in this install"
            continue
        try:
            built.append(factories[name](ctx))
        except Exception as exc:
            log.exception("pipeline %s cannot be built", name)
            failed[name] = f"{type(exc).__name__}: {exc}"
    return built, failed
