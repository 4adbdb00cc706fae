"""Running a set of pipelines in one process, shared by the worker and its scorer child process:
start them concurrently (one that cannot start is logged, left out and reported), run until a stop
request (SIGTERM/SIGINT or the stop event) or until a pipeline's loop dies, stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Sequence

from consumers.pipeline import Pipeline

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


async def start_pipelines(pipelines: Sequence[Pipeline], failed: dict[str, str], timeout: float) -> list[Pipeline]:
    """Start the pipelines concurrently (each group join and model load takes seconds); one that fails to
    start (a scorer's model missing) is logged, recorded in ``failed`` and stopped, so the others keep
    running. Returns those that started."""

    async def start_one(pipeline: Pipeline) -> bool:
        try:
            await pipeline.start()
        except Exception as exc:
            log.exception("pipeline %s failed to start; running without it", pipeline.name)
            failed[pipeline.name] = f"{type(exc).__name__}: {exc}"
            await pipeline.stop(timeout)
            return False
        return True

    ok = await asyncio.gather(*(start_one(p) for p in pipelines))
    return [p for p, good in zip(pipelines, ok, strict=True) if good]


async def run_until_stopped(pipelines: Sequence[Pipeline], stop_event: asyncio.Event) -> None:
    """Until ``stop_event`` is set; raises RuntimeError when a pipeline's run loop ends by itself."""
    waiters = {asyncio.create_task(p.wait()): p for p in pipelines}
    stop = asyncio.create_task(stop_event.wait())
    try:
        done, _ = await asyncio.wait([stop, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [stop, *waiters]:
            task.cancel()
    for task in done:
        if task is not stop:
            pipeline = waiters[task]
            log.error("pipeline %s ended unexpectedly", pipeline.name)
            raise RuntimeError(f"pipeline {pipeline.name} ended unexpectedly")
