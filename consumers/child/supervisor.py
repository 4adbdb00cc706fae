"""The worker's side of the scorer child process: start it, answer its inserts, keep its metrics and
health, restart it with backoff when it dies, stop it on shutdown.

- Start: ``python -m consumers.child.host`` in its own session (the terminal's Ctrl-C reaches only the
  worker, which stops it in order), with one end of a socketpair (``pass_fds``) and ``--nice``; the
  child asks the kernel to kill it when the worker dies. The first message is its ``spec``.
- Inserts (embedded chdb warehouse: the child cannot open the directory): each ``write`` is decoded and
  inserted by a ``ClickHouseSink`` per pipeline on the worker's warehouse (off the event loop), answered
  ``ok`` or with the error's class (transient / permanent) so the child's pipeline pauses or narrows
  down exactly as it would in process. Each ``read`` (a scorer's named warehouse read, e.g. drift
  baselines at first sight of a key: ``consumers/child/reads.py``) is answered the same way, with its
  ``result``, from one read client on the worker's warehouse.
- Health: a pipeline is running when the child last said so; while the child starts, restarts or lacks
  a pipeline, ``health()`` lists it as not running with the reason (``/healthz``: degraded, not failing —
  a dead scorer process never restart-loops the whole worker). A pipeline the child is still starting or
  retrying (broker unreachable, model missing: the child retries with backoff) carries the child's
  ``state``, ``error``, ``kind``, ``attempts`` and ``retry_in_s``; ``since``/``down_for_s`` are this side's
  (the first status or exit that showed it down), so they span child restarts.
- Watchdog: a child that is alive but silent (no status or write for ``stall_s``: hung in a native call,
  deadlocked, SIGSTOPped) is logged, SIGKILLed and restarted like one that died. The clock starts at the
  spawn and restarts with every message; model loading does not stop it, since the child reports from
  its event loop while models load in threads, but its imports and first status must fit in ``stall_s``.
  A silence is confirmed on a second check (the worker's own loop may have been the one held up).
- Metrics: the families of the child's last status (about once a second); while it is down, only
  ``gatewatch_consumer_pipeline_up`` 0 for each of its pipelines (so an alert on it fires). A restarted
  child's counters start from zero, as after any process restart (Prometheus' ``rate`` and ``increase``
  handle such resets).
- Stop: SIGTERM to the child, whose pipelines finish their batch, write it through this (still serving)
  channel and commit; after ``stop_timeout_s`` + a grace period, SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import site
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

import consumers
from consumers.child.channel import Channel, ChannelError
from consumers.child.codec import decode_table
from consumers.child.reads import answer_read
from consumers.child.snapshot import families
from consumers.contracts import PermanentError, TransientError
from consumers.metrics import PIPELINE_UP
from consumers.scorers.reads import LocalReads
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.startup import utc_iso
from consumers.warehouse import Warehouse

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0  # beyond the pipelines' own shutdown timeout (consumer close, final status)


class ScorerProcess:
    def __init__(self, names: Sequence[str], spec: dict[str, Any], *, warehouse: Warehouse | None,
                 nice: int = 10, sched: str = "idle", max_rows_per_insert: int = 50_000, stop_timeout_s: float = 30.0,
                 restart_base_s: float = 1.0, restart_max_s: float = 30.0, stable_s: float = 60.0,
                 stall_s: float = 120.0) -> None:
        if stall_s <= 0:
            raise ValueError("stall_s must be positive")
        self.names = tuple(names)
        self.spec = {**spec, "t": "spec", "pipelines": list(self.names), "forward": warehouse is not None}
        self.warehouse = warehouse  # None: the child writes to a ClickHouse server itself
        self.nice = nice
        self.sched = sched
        self.max_rows_per_insert = max_rows_per_insert
        self.stop_timeout_s = stop_timeout_s
        self.restart_base_s, self.restart_max_s, self.stable_s = restart_base_s, restart_max_s, stable_s
        self.restarts = 0
        self.stall_s = stall_s
        self.stalls = 0  # children killed by the watchdog
        self._heard = 0.0  # time.monotonic() of the child's last message (or of its spawn)
        self._stalled = False
        self.proc: asyncio.subprocess.Process | None = None
        self._sinks: dict[str, ClickHouseSink] = {}
        self._reads = LocalReads(warehouse.new_client) if warehouse is not None else None
        self._status: dict[str, Any] | None = None
        self._down: str | None = None
        self._down_since: dict[str, float] = {}  # pipeline -> time.time() since it is not running
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._mark_down()
            self._task = asyncio.create_task(self._supervise(), name="scorer-process")

    async def stop(self) -> None:
        """Ask the child to finish and exit; SIGKILL it after the shutdown timeout. Idempotent."""
        self._stopping = True
        self._wake.set()
        self._signal(signal.SIGTERM)
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout_s + STOP_GRACE_S)
        if not done:
            log.warning("scorer process did not stop in time; killing it")
            self._signal(signal.SIGKILL)
            await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("scorer process supervisor failed: %r", task.exception())

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        short_runs = 0
        while not self._stopping:
            began = loop.time()
            try:
                code = await self._run_once()
                why = f"stalled (silent {self.stall_s:.0f}s), killed" if self._stalled else f"exited with code {code}"
            except Exception as exc:  # could not start it: retry later, as after a crash
                log.exception("scorer process could not run")
                why = f"could not start: {type(exc).__name__}: {exc}"
            if self._stopping:
                break
            short_runs = 0 if loop.time() - began >= self.stable_s else short_runs + 1
            delay = min(self.restart_max_s, self.restart_base_s * 2 ** max(0, short_runs - 1))
            self._down = f"scorer process {why}; restarting in {delay:.1f}s"
            log.error("%s (pipelines %s unhealthy meanwhile)", self._down, ", ".join(self.names))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if not self._stopping:
                self.restarts += 1

    async def _run_once(self) -> int:
        ours, theirs = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self._command(theirs.fileno()), pass_fds=(theirs.fileno(),), start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL, env=self._env())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        proc = self.proc
        self._status, self._down, self._stalled = None, None, False
        self._heard = time.monotonic()
        log.info("scorer process %d started for %s (nice +%d, %s scheduling)", proc.pid, ", ".join(self.names),
                 self.nice, self.sched)
        if self._stopping:  # stop() came while it was being spawned
            self._signal(signal.SIGTERM)
        channel = await Channel.open(ours)
        watchdog = asyncio.create_task(self._watch(proc.pid), name="scorer-process-watchdog")
        try:
            await self._serve(channel)
        finally:
            watchdog.cancel()
            await channel.close()
            try:
                code = await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:  # closed its channel but lingers
                self._signal(signal.SIGKILL)
                code = await proc.wait()
            self.proc, self._status = None, None
            self._mark_down()
        return code

    async def _watch(self, pid: int) -> None:
        """SIGKILL the child once it has been silent for ``stall_s``, confirmed on a second check."""
        every = min(1.0, self.stall_s / 4)
        suspect = False
        while True:
            await asyncio.sleep(every)
            silent = time.monotonic() - self._heard
            if silent < self.stall_s or self._stopping:  # stop() has its own deadline
                suspect = False
                continue
            if not suspect:  # a message may be waiting behind a hold-up of this loop: look again
                suspect = True
                continue
            log.error("scorer process %d sent nothing for %.1fs (hung or stopped); killing it", pid, silent)
            self.stalls += 1
            self._stalled = True
            self._signal(signal.SIGKILL)
            return

    def _command(self, fd: int) -> list[str]:
        return [sys.executable, "-m", "consumers.child.host", "--fd", str(fd), "--parent-pid", str(os.getpid()),
                "--nice", str(self.nice), "--sched", self.sched]

    @staticmethod
    def _env() -> dict[str, str]:
        """The child imports this very code: a source tree goes first on its path (an installed package is
        found in site-packages anyway, which must not go ahead of the standard library)."""
        root = Path(consumers.__file__).resolve().parent.parent
        if root in {Path(p).resolve() for p in site.getsitepackages()}:
            return dict(os.environ)
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": str(root) if not path else f"{root}{os.pathsep}{path}"}

    # ------------------------------------------------------------------------------------------ messages
    async def _serve(self, channel: Channel) -> None:
        inflight: set[asyncio.Task[None]] = set()
        try:
            await channel.send(self.spec)
            while (msg := await channel.recv()) is not None:
                self._heard = time.monotonic()
                kind = msg.get("t")
                if kind in ("write", "read"):
                    task = asyncio.create_task(self._write(channel, msg) if kind == "write" else
                                               self._read(channel, msg))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                elif kind == "status":
                    self._status = msg
                    self._track(msg.get("pipelines", {}))
                else:
                    log.warning("scorer process sent an unknown message %r", kind)
        except ChannelError as exc:
            log.error("scorer process broke the channel protocol (%s); killing it", exc)
            self._signal(signal.SIGKILL)
        except OSError as exc:
            log.warning("scorer process channel failed: %r", exc)
        finally:
            if inflight:  # let inserts in flight finish before the warehouse may close
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _write(self, channel: Channel, msg: dict[str, Any]) -> None:
        reply = await self._insert(msg)
        with contextlib.suppress(OSError):  # the child died meanwhile: it retries after its restart
            await channel.send({"t": "ack", "id": msg.get("id"), **reply})

    async def _read(self, channel: Channel, msg: dict[str, Any]) -> None:
        reply = await answer_read(self._reads, msg)
        with contextlib.suppress(OSError):  # the child died meanwhile: it reads again after its restart
            await channel.send({"t": "ack", "id": msg.get("id"), **reply})

    async def _insert(self, msg: dict[str, Any]) -> dict[str, Any]:
        pipeline = msg.get("pipeline")
        if self.warehouse is None or pipeline not in self.names:
            return {"ok": False, "kind": "permanent", "error": f"no inserts here for pipeline {pipeline!r}"}
        sink = await self._sink(str(pipeline))
        try:
            for table_msg in msg["tables"]:
                table, columns, data = await asyncio.to_thread(decode_table, table_msg)
                await sink.insert_columns(table, columns, data)
        except TransientError as exc:
            return {"ok": False, "kind": "transient", "error": str(exc)}
        except PermanentError as exc:
            return {"ok": False, "kind": "permanent", "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "kind": "permanent", "error": f"malformed write: {type(exc).__name__}: {exc}"}
        return {"ok": True}

    async def _sink(self, pipeline: str) -> ClickHouseSink:
        sink = self._sinks.get(pipeline)
        if sink is None:
            if self.warehouse is None:
                raise ValueError("no warehouse to insert into")
            sink = ClickHouseSink(self.warehouse.new_client, max_rows_per_insert=self.max_rows_per_insert)
            await sink.start()
            self._sinks[pipeline] = sink
        return sink

    # ------------------------------------------------------------------------------------------ views
    def _mark_down(self, names: Sequence[str] | None = None) -> None:
        now = time.time()
        for name in self.names if names is None else names:
            self._down_since.setdefault(name, now)

    def _track(self, reported: dict[str, Any]) -> None:
        for name in self.names:
            if reported.get(name, {}).get("running"):
                self._down_since.pop(name, None)
            else:
                self._mark_down([name])

    def _since(self, name: str) -> dict[str, Any]:
        since = self._down_since.get(name)
        return {} if since is None else {"since": utc_iso(since), "down_for_s": round(time.time() - since, 1)}

    def metric_families(self) -> list[Metric]:
        """The child's metric families as it last sent them; while it is down or starting, only its
        pipelines' ``gatewatch_consumer_pipeline_up`` 0."""
        status = self._status
        if status:
            return families(status.get("metrics", []))
        up = GaugeMetricFamily(PIPELINE_UP, "1 while the pipeline runs (scorer process down: 0)",
                               labels=["pipeline"])
        for name in self.names:
            up.add_metric([name], 0)
        return [up]

    def health(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """(pipelines running in the child, as last reported; the others: name -> not running, why)."""
        proc, status = self.proc, self._status
        base: dict[str, Any] = {"process": "scorer-child", "pid": proc.pid if proc else None,
                                "restarts": self.restarts, "stalls": self.stalls}
        if proc is not None:
            base["silent_s"] = round(time.monotonic() - self._heard, 1)
        if status is None:
            why = self._down or ("stopping" if self._stopping else "starting")
            return {}, {n: {"running": False, "error": why, **base, **self._since(n)} for n in self.names}
        reported: dict[str, dict[str, Any]] = status.get("pipelines", {})
        failed: dict[str, str] = status.get("failed", {})
        running, down = {}, {}
        for name in self.names:
            h = reported.get(name)
            if h is not None and h.get("running"):
                running[name] = {**h, **base}
            elif name in failed:
                down[name] = {"running": False, "error": failed[name], "kind": "permanent", **base,
                              **self._since(name)}
            elif h is not None:  # starting or retrying its start in the child
                down[name] = {**h, "error": h.get("error") or h.get("state", "starting"), **base, **self._since(name)}
            else:
                down[name] = {"running": False, "error": "starting", **base, **self._since(name)}
        return running, down
