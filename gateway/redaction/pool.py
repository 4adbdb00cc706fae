"""Where a redactor's detection work runs, with one failure mapping: anything but a PII block becomes
``RedactionFailed``, so a caller never gets the unredacted text back (fail closed).

Large or NER work goes to a thread pool behind a semaphore (the event loop keeps serving, and a slot is
held until the thread is really done, even after the caller stopped waiting); short regex-engine work
runs inline, where a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from gateway.redaction.errors import PIIBlocked, RedactionFailed
from gateway.redaction.recognizers import RegexTimeout

T = TypeVar("T")


class WorkerPool:
    """``executor``: shared by every redactor of a process when given; else owned (closed by ``close``)."""

    def __init__(self, concurrency: int, timeout_s: float, executor: ThreadPoolExecutor | None = None) -> None:
        self.timeout_s = timeout_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(concurrency, thread_name_prefix="pii")
        self._slots = asyncio.Semaphore(concurrency)
        self.closed = False

    def close(self) -> None:
        """Idempotent; an owned pool drops its queued work."""
        if not self.closed:
            self.closed = True
            if self._own_executor:
                self._executor.shutdown(wait=False, cancel_futures=True)

    def inline(self, fn: Callable[[], T]) -> T:
        """Short regex-engine work on the event loop: same failure mapping as the pool."""
        if self.closed:
            raise RedactionFailed("redactor is closed")
        try:
            return fn()
        except (PIIBlocked, RedactionFailed):
            raise
        except RegexTimeout as exc:
            raise RedactionFailed("PII redaction failed: a regex ran out of time") from exc
        except Exception as exc:
            raise RedactionFailed(f"PII redaction failed ({type(exc).__name__})") from exc

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn`` in a worker thread, within ``timeout_s`` (waiting for a free slot included)."""
        if self.closed:
            raise RedactionFailed("redactor is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._slots.acquire()
                try:
                    fut: Future[T] = self._executor.submit(fn)
                except BaseException:
                    self._slots.release()
                    raise
                # the slot is held until the thread is done, even when we stop waiting for it
                fut.add_done_callback(lambda _: _release_threadsafe(loop, self._slots))
                return await asyncio.wrap_future(fut)
        except (PIIBlocked, RedactionFailed):
            raise
        except TimeoutError as exc:
            raise RedactionFailed(f"PII redaction timed out after {self.timeout_s}s") from exc
        except RegexTimeout as exc:
            raise RedactionFailed("PII redaction failed: a regex ran out of time") from exc
        except Exception as exc:
            raise RedactionFailed(f"PII redaction failed ({type(exc).__name__})") from exc


def _release_threadsafe(loop: asyncio.AbstractEventLoop, sem: asyncio.Semaphore) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the slot any more
        loop.call_soon_threadsafe(sem.release)
