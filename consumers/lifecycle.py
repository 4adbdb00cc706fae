"""Running a set of pipelines in one process, shared by the worker and its scorer child process:
start them (each retried with backoff until it runs: ``consumers/startup.py``), run until a stop request
(SIGTERM/SIGINT or the stop event) or until a started pipeline's loop dies, stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Sequence

from consumers.config import WorkerConfig
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline, RetryPolicy
from consumers.sources.kafka import TopicsReady
from consumers.startup import PipelineStarter
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals(stop_event: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop_event`` while inside (main thread only; elsewhere a no-op)."""
    loop = asyncio.get_running_loop()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop_event.set)
                installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def starter(pipelines: Sequence[Pipeline], unbuilt: dict[str, str], worker: WorkerConfig, kafka: KafkaConfig,
            metrics: ConsumerMetrics) -> PipelineStarter:
    """The process's ``PipelineStarter``: topics ensured first (once), backoff and timeouts from ``worker``.
    Pipelines that could not even be built (``unbuilt``: name -> error) are reported down for good."""
    for name in unbuilt:
        metrics.pipeline_up.labels(name).set(0)
        metrics.start_failures.labels(name, "permanent").inc()
    return PipelineStarter(pipelines, metrics=metrics, stop_timeout_s=worker.shutdown_timeout_s,
                           retry=RetryPolicy(worker.start_retry_base_s, worker.start_retry_max_s),
                           prepare=TopicsReady(kafka, worker.start_timeout_s))


async def run_until_stopped(starter: PipelineStarter, stop_event: asyncio.Event) -> None:
    """Until ``stop_event`` is set; raises RuntimeError when a started pipeline's run loop ends by itself."""
    stop = asyncio.create_task(stop_event.wait())
    died = asyncio.create_task(starter.died.wait())
    try:
        done, _ = await asyncio.wait([stop, died], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        died.cancel()
    if died in done:
        log.error("pipeline %s ended unexpectedly", starter.dead)
        raise RuntimeError(f"pipeline {starter.dead} ended unexpectedly")
