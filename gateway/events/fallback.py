"""The emitter's disk side: appending to the spool with every refusal counted, the spool-size gauge,
warnings logged once per episode, and the syncer that fsyncs the spool and the retention from a worker
thread every ``SYNC_INTERVAL_S`` (segments.py says what a crash can then lose)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from gateway.events import metrics as m
from gateway.events.segments import Record, SyncTargets, fsync_paths
from gateway.events.spool import Spool

log = logging.getLogger("gateway.events.emitter")  # the emitter's own messages, as before the split

SYNC_INTERVAL_S = 0.5  # spool: write(2) the buffer and fsync (in a thread) at most this often


class _Syncable(Protocol):
    def fsync_targets(self) -> SyncTargets | None: ...


class Fallback:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.warned: set[str] = set()  # kinds of trouble logged in this episode
        self._gauge = 0

    def append(self, records: Iterable[Record]) -> None:
        """Spool ``records`` in order; what cannot be written is dropped and counted, never raised."""
        for key, value in records:
            if not self.spool.opened:
                self.drop("spool_error", "spool not open (emit() before start())")
                continue
            try:
                ok = self.spool.append(key, value)
            except OSError as exc:
                self.drop("spool_error", f"spool write failed: {exc}")
                continue
            if ok:
                m.SPOOLED.inc()
            else:
                self.drop("spool_full", f"spool full ({self.spool.max_bytes} bytes), dropping events")
        self.update_gauge()

    def drop(self, reason: str, message: str) -> None:
        m.DROPPED.labels(reason).inc()
        self.warn_once(reason, "%s", message)

    def warn_once(self, kind: str, fmt: str, *args: object) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            log.warning(fmt, *args)

    def update_gauge(self) -> None:
        size = self.spool.disk_bytes
        m.SPOOL_BYTES.inc(size - self._gauge)
        self._gauge = size

    async def sync_loop(self, *others: _Syncable) -> None:
        """Forever: fsync the spool and ``others`` (the retention) from a worker thread."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                for store in (self.spool, *others):
                    targets = store.fsync_targets()
                    if targets is not None:
                        await asyncio.to_thread(fsync_paths, targets)
            except OSError as exc:
                self.warn_once("fsync", "spool flush/fsync failed: %s", exc)
