"""Starting pipelines until they run, shared by the worker and its scorer child process.

Each pipeline is started by a task of its own; an attempt that fails is retried with backoff and jitter
(``RetryPolicy``: ``worker.start_retry_base_s`` doubling to ``start_retry_max_s``, 1 s -> 30 s by default)
until the pipeline runs or the process stops. Guarantees:

- Nothing gives up: a pipeline that could not reach the broker at start-up comes up by itself once the
  broker is back, without a restart. Every attempt is bounded (the Kafka source's ``start_timeout_s``:
  a frozen broker accepts connections and then answers nothing, which would hang aiokafka's start).
- Transient or permanent: timeouts and connection errors are transient; otherwise an exception's
  ``retriable`` class attribute decides (aiokafka's errors, ``TransientError``/``PermanentError``,
  ``ModelUnavailable``), else its class (missing files, imports, bad values: permanent; anything else,
  other OS errors included: transient). A permanent failure (a scorer's model
  files missing) is a configuration problem: it is reported the same way and retried too, but only at the
  cap, so fixing the configuration (copying the files in) is picked up without a restart.
- Reported: ``health()`` gives each pipeline's state (``starting``, ``retrying``, ``running``, ``died``,
  ``stopped``) and, while it does not run, the last error, its kind, since when it is down (``since``, UTC)
  and for how long (``down_for_s``), the attempts so far and when the next one comes (``retry_in_s``);
  ``gatewatch_consumer_pipeline_up`` is 0 meanwhile and every failed attempt counts in
  ``gatewatch_consumer_pipeline_start_failures_total{pipeline, kind}``.
- A retry redoes only what failed: sinks' and scorers' ``start`` are idempotent (a loaded model stays
  loaded) and a failed source start closes what it opened.
- ``stop()`` is prompt: retry loops and attempts in flight are cancelled, then every pipeline stops
  (``Pipeline.stop`` is safe on a pipeline that never started). A pipeline whose run loop ends by itself
  after it started sets ``died`` (the process then exits, as before: the loop's failure is not a start
  problem).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline, RetryPolicy, utc_iso

log = logging.getLogger(__name__)
Prepare = Callable[[], Awaitable[None]]  # run before each attempt (e.g. ``TopicsReady``)

_TRANSIENT = (TimeoutError, ConnectionError, KafkaTimeoutError)
_PERMANENT = (ImportError, LookupError, ValueError, TypeError, FileNotFoundError, NotADirectoryError,
              IsADirectoryError, PermissionError)


def is_permanent(exc: BaseException) -> bool:
    """Whether a start failure needs a configuration change rather than time (see the module docstring)."""
    if isinstance(exc, _TRANSIENT):  # aiokafka marks its own timeout not retriable; for a start it is
        return False
    retriable = getattr(type(exc), "retriable", None)
    if isinstance(retriable, bool):
        return not retriable
    return isinstance(exc, _PERMANENT)


def describe(exc: BaseException) -> str:
    """``Class: message`` (aiokafka's messages already start with the class name), at most 1000 chars."""
    text = str(exc)
    name = type(exc).__name__
    return (text if text.startswith(f"{name}:") else f"{name}: {text}" if text else name)[:1000]


@dataclass(slots=True)
class _Slot:
    pipeline: Pipeline
    state: str = "starting"
    attempts: int = 0  # start attempts begun
    error: str | None = None
    permanent: bool = False
    since: float = 0.0  # time.time() since when it is down
    retry_at: float | None = None  # time.monotonic() of the next attempt
    task: asyncio.Task[None] | None = None

    def health(self) -> dict[str, Any]:
        if self.state == "running":
            return {**self.pipeline.health(), "state": "running", "attempts": self.attempts}
        out: dict[str, Any] = {"running": False, "state": self.state, "error": self.error or self.state,
                               "kind": None if self.error is None else "permanent" if self.permanent else "transient",
                               "since": utc_iso(self.since), "down_for_s": round(time.time() - self.since, 1),
                               "attempts": self.attempts}
        if self.retry_at is not None:
            out["retry_in_s"] = round(max(0.0, self.retry_at - time.monotonic()), 1)
        return out


class PipelineStarter:
    def __init__(self, pipelines: Sequence[Pipeline], *, metrics: ConsumerMetrics, retry: RetryPolicy,
                 stop_timeout_s: float = 30.0, prepare: Prepare | None = None) -> None:
        self._slots = {p.name: _Slot(p, since=time.time()) for p in pipelines}
        self.metrics = metrics
        self.retry = retry
        self.stop_timeout_s = stop_timeout_s
        self.prepare = prepare
        self.died = asyncio.Event()  # a started pipeline's loop ended by itself
        self.dead: str | None = None  # the first pipeline that died
        self._stopping = False
        for name in self._slots:
            metrics.pipeline_up.labels(name).set(0)

    def health(self) -> dict[str, dict[str, Any]]:
        return {name: slot.health() for name, slot in self._slots.items()}

    def start(self) -> None:
        """Launch one start-and-watch task per pipeline (idempotent; nothing after ``stop``)."""
        for slot in self._slots.values():
            if slot.task is None and not self._stopping:
                slot.since = time.time()
                slot.task = asyncio.create_task(self._keep_starting(slot), name=f"start-{slot.pipeline.name}")

    async def stop(self) -> None:
        """Cancel the retry loops (and attempts in flight), then stop every pipeline. Idempotent."""
        self._stopping = True
        waiting = [s.task for s in self._slots.values() if s.task is not None and s.state != "running"]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        results = await asyncio.gather(*(s.pipeline.stop(self.stop_timeout_s) for s in self._slots.values()),
                                       return_exceptions=True)
        for slot, result in zip(self._slots.values(), results, strict=True):
            if isinstance(result, Exception):
                log.error("pipeline %s did not stop cleanly: %r", slot.pipeline.name, result)
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots.values():
            if slot.state != "died":
                slot.state, slot.retry_at = "stopped", None
            self.metrics.pipeline_up.labels(slot.pipeline.name).set(0)

    async def _keep_starting(self, slot: _Slot) -> None:
        pipeline = slot.pipeline
        while not await self._attempt(slot):
            await asyncio.sleep(max(0.0, (slot.retry_at or 0.0) - time.monotonic()))
            slot.retry_at = None
        slot.state, slot.error, slot.retry_at = "running", None, None
        self.metrics.pipeline_up.labels(pipeline.name).set(1)
        if slot.attempts > 1:
            log.info("pipeline %s started after %d attempts (down %.1fs)", pipeline.name, slot.attempts,
                     time.time() - slot.since)
        await self._watch(slot)

    async def _attempt(self, slot: _Slot) -> bool:
        slot.attempts += 1
        try:
            if self.prepare is not None:
                await self.prepare()
            await slot.pipeline.start()
        except Exception as exc:  # noqa: BLE001 -- any start failure is reported and retried
            self._failed(slot, exc)
            return False
        return True

    def _failed(self, slot: _Slot, exc: Exception) -> None:
        """Record the failure, count it and schedule the next attempt (``slot.retry_at``)."""
        name, permanent = slot.pipeline.name, is_permanent(exc)
        error = describe(exc)
        first = slot.error is None or not slot.error.startswith(f"{type(exc).__name__}:")  # a new failure
        slot.state, slot.error, slot.permanent = "retrying", error, permanent
        kind = "permanent" if permanent else "transient"
        self.metrics.start_failures.labels(name, kind).inc()
        delay = self.retry.delay(16 if permanent else slot.attempts - 1)  # permanent: straight to the cap
        slot.retry_at = time.monotonic() + delay
        log.warning("pipeline %s could not start (attempt %d, %s): %s; next attempt in %.1fs", name,
                    slot.attempts, kind, error, delay, exc_info=exc if first else None)

    async def _watch(self, slot: _Slot) -> None:
        """Until the run loop ends: after ``stop()`` (stopped) or by itself (died: ``died`` is set)."""
        try:
            await slot.pipeline.wait()
            error = None if self._stopping else "the run loop ended by itself"
        except Exception as exc:  # noqa: BLE001 -- logged by the run loop; reported here
            error = f"run loop failed: {describe(exc)}"
        self.metrics.pipeline_up.labels(slot.pipeline.name).set(0)
        slot.since = time.time()
        if error is None:
            slot.state = "stopped"
            return
        slot.state, slot.error, slot.permanent = "died", error, False
        if self.dead is None:
            self.dead = slot.pipeline.name
        self.died.set()
