"""The scorer child process: ``python -m consumers.child.host --fd N --parent-pid P --nice K --sched idle``.

Started by the worker (``supervisor.py``), never by hand. It reads its ``spec`` from the channel, builds
the scorer pipelines with the worker's own registry code (same Kafka source and consumer groups, commit
only after the sink wrote), writes through the worker (chdb: ``ForwardingSink``; scorers' warehouse
reads, e.g. drift baselines, likewise: ``ParentReads``) or with its own ClickHouse client (server DSN),
and sends its metrics and health about once a second. A pipeline that cannot start (broker unreachable or
frozen, a model missing) is retried with backoff in this process (``consumers/startup.py``), its state in
every status message, so the worker's ``/healthz`` shows it.
SIGTERM (from the worker) cancels the start retries, finishes the batch in flight, writes it, commits and
exits 0; a started pipeline whose loop dies exits 1 (the worker restarts the process); when the worker
dies the kernel kills this process (PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.child.channel import Channel
from consumers.child.reads import ParentReads
from consumers.child.snapshot import snapshot
from consumers.config import WorkerConfig
from consumers.lifecycle import run_until_stopped, starter, stop_on_signals
from consumers.metrics import ConsumerMetrics
from consumers.registry import PipelineContext, build_pipelines
from consumers.sinks.forward import ForwardingSink, ParentLink
from consumers.startup import PipelineStarter
from consumers.warehouse import Warehouse
from schemas import logsafe
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)
STATUS_EVERY_S = 1.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel SIGKILLs this process when the worker dies (even by SIGKILL), so a scorer process
    is never orphaned; if the worker died before this call, exit now."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the channel's end still stops this process
        log.warning("cannot ask to die with the worker (no prctl); relying on the channel")
    if os.getppid() != parent_pid:
        os._exit(1)


class _Status:
    """``failed``: pipelines that cannot be built here; ``pipelines``: the others' health (running, or
    starting/retrying with the error, attempts and since when: ``PipelineStarter.health``)."""

    def __init__(self, registry: CollectorRegistry, failed: dict[str, str], pipelines: PipelineStarter) -> None:
        self.registry = registry
        self.failed = failed
        self.pipelines = pipelines

    def message(self) -> dict[str, Any]:
        return {"t": "status", "metrics": snapshot(self.registry), "failed": dict(self.failed),
                "pipelines": self.pipelines.health()}


async def _report(link: ParentLink, status: _Status) -> None:
    while True:
        try:
            await link.send(status.message())
        except OSError:
            return  # the parent is gone: ``link.lost`` stops the process
        await asyncio.sleep(STATUS_EVERY_S)


def _context(spec: dict[str, Any], link: ParentLink, metrics: ConsumerMetrics) -> PipelineContext:
    cfg = WorkerConfig.model_validate(spec["worker"])
    kafka = KafkaConfig.model_validate(spec["kafka"])
    if spec["forward"]:  # chdb: the worker owns the data directory, it inserts for us

        def sink(name: str) -> ForwardingSink:
            return ForwardingSink(link, name, max_rows_per_insert=cfg.max_rows_per_insert)

        return PipelineContext(kafka, cfg, None, metrics, spec["dlq_owner"], sink_factory=sink,
                               reads=ParentReads(link))
    return PipelineContext(kafka, cfg, Warehouse(spec["dsn"]), metrics, spec["dlq_owner"])


async def run(channel: Channel, spec: dict[str, Any], stop: asyncio.Event) -> int:
    """Run the spec's pipelines until ``stop`` (SIGTERM) or the worker is lost; the exit code."""
    metrics = ConsumerMetrics(CollectorRegistry())
    link = ParentLink(channel)
    reader = asyncio.create_task(link.run(), name="parent-link")
    ctx = _context(spec, link, metrics)
    built, failed = build_pipelines(ctx, spec["pipelines"])
    pipelines = starter(built, failed, ctx.worker, ctx.kafka, metrics)
    status = _Status(metrics.registry, failed, pipelines)
    lost = asyncio.create_task(link.lost.wait())
    lost.add_done_callback(lambda _: stop.set())
    reporter = asyncio.create_task(_report(link, status), name="status")
    code = 0
    try:
        if not stop.is_set():  # stopped while it was being built: load no model
            pipelines.start()
            log.info("scorer process %d starting %s", os.getpid(), [p.name for p in built])
        await run_until_stopped(pipelines, stop)
    except RuntimeError:
        code = 1
    finally:
        if link.lost.is_set():
            log.warning("lost the worker process; stopping")
        await pipelines.stop()
        reporter.cancel()
        with contextlib.suppress(OSError):
            await link.send(status.message())  # the final counters
        lost.cancel()
        reader.cancel()
        if ctx.warehouse is not None:
            ctx.warehouse.close()
        await channel.close()
    log.info("scorer process %d stopped", os.getpid())
    return code


async def serve(fd: int) -> int:
    channel = await Channel.open(socket.socket(fileno=fd))
    stop = asyncio.Event()
    with stop_on_signals(stop):
        spec = await asyncio.wait_for(channel.recv(), 60)
        if not spec or spec.get("t") != "spec":
            log.error("scorer process: no spec from the worker")
            return 2
        logging.getLogger().setLevel(int(spec.get("log_level", logging.INFO)))
        return await run(channel, spec, stop)


AUTOGROUP = "/proc/self/autogroup"


def lower_priority(increment: int, autogroup: str = AUTOGROUP) -> int:
    """Add ``increment`` to this process's niceness, and to its autogroup's when it leads its own session.

    ``os.nice`` alone is not enough on a desktop-style Linux (``kernel.sched_autogroup_enabled=1``, tasks in
    the root cgroup): the scheduler first shares the CPU fairly between *autogroups* (one per session) and
    applies a task's nice only inside its group. The worker starts this process in a session of its own, so
    a bare nice +19 still got a full share against the gateway, the broker and the worker (measured: a
    nice-19 spinner in its own session took 32% of two cores next to two normal ones; with the autogroup
    nice set too, 3%). Writing the same value to ``/proc/self/autogroup`` fixes that; it is skipped when
    this process shares a session (it would slow down everything else in it), and harmless where autogroup
    is off or does not apply (a container's cgroup: there the plain nice works). Raising a niceness needs
    no privilege. Returns the niceness now in effect. Linux applies it per thread: every thread started
    later (torch's, the tokenizers') inherits it, so call it before any thread starts.
    """
    niceness = os.nice(increment)
    if os.getsid(0) == os.getpid() and os.path.exists(autogroup):  # absent: kernel built without autogroup
        try:
            with open(autogroup, "w") as f:
                f.write(str(niceness))
        except OSError as exc:  # e.g. a lower value than the group's has (needs CAP_SYS_NICE)
            log.warning("scorer process: could not set the autogroup nice to %d (%s); the plain nice applies "
                        "only within this session", niceness, exc)
    return niceness


def run_when_idle() -> bool:
    """SCHED_IDLE for this thread and every thread it starts later (the policy is inherited): whenever a
    normal task (the worker's archiver, a gateway, the broker) wakes up on a core this process runs on, the
    scheduler switches to it at once, instead of letting a low-weight task finish its slice — niceness
    alone only lowers the share over time, and in the benchmark a nice +10 or +19 child still took ~0.4 of
    a core from a saturated box. Needs no privilege. False (logged) where the platform refuses it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        log.warning("scorer process: SCHED_IDLE unavailable (%s); only the niceness applies", exc)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consumers.child.host", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="this process's end of the socketpair")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--nice", type=int, default=0, help="niceness to add (before any thread starts)")
    parser.add_argument("--sched", choices=["idle", "normal"], default="normal",
                        help="idle: SCHED_IDLE for every thread of this process (set before any starts)")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s [scorers {os.getpid()}]: %(message)s")
    logsafe.install()
    if args.nice > 0:
        lower_priority(args.nice)
    if args.sched == "idle":
        run_when_idle()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(serve(args.fd))


if __name__ == "__main__":
    sys.exit(main())
