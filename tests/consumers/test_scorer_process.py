"""The scorer pipelines in the worker's child process, with real components (Tansu broker, chdb, the
profanity-check toxicity backend): scores written through the worker, the child's metrics and health on
the worker's console, a SIGKILLed child restarted with nothing missing or doubled, a hung (SIGSTOPped)
child killed and replaced, and ``gatewatch worker`` stopped by SIGTERM (both processes exit, the batch
in flight is written and committed) or killed by SIGKILL (the child dies with it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.child.supervisor import ScorerProcess
from consumers.config import WorkerConfig
from consumers.metrics import ConsumerMetrics
from consumers.warehouse import Warehouse
from consumers.worker import ConsoleDeps, create_console_app, run_worker
from gatewatch.config import Settings
from gatewatch.procs import free_port
from schemas.config import KafkaConfig
from tests.consumers.conftest import GROUP_OPTIONS, http_get, make_event, produce, read_topic, wait_until

pytestmark = pytest.mark.timeout(180)
SCORERS = {"device": "cpu", "toxicity": {"backend": "profanity"}}  # the cheapest real scorer (2 rows/event)


def _worker(console_port: int, **extra: Any) -> dict[str, Any]:
    return {"pipelines": ["archiver", "toxicity"], "console_port": console_port, "scorer_process": "child",
            "batch": {"max_records": 50, "max_wait_ms": 200}, "fetch_max_wait_ms": 100, "scorers": SCORERS,
            **GROUP_OPTIONS, **extra}


def _scores(wh: Warehouse) -> tuple[int, int, int]:
    """(rows under FINAL, distinct (event, target) pairs, raw rows) of the toxicity scores."""
    return wh.client.query(
        "SELECT (SELECT count() FROM gatewatch.scores FINAL WHERE scorer = 'toxicity'), "
        "(SELECT uniqExact(event_id, target) FROM gatewatch.scores WHERE scorer = 'toxicity'), "
        "(SELECT count() FROM gatewatch.scores WHERE scorer = 'toxicity')").result_rows[0]


async def test_child_scores_through_the_worker_and_restarts(kafka: KafkaConfig, tmp_path: Path) -> None:
    dsn, port = f"chdb://{tmp_path / 'wh'}", free_port()
    console = f"http://127.0.0.1:{port}"
    settings = Settings(home=tmp_path, kafka=kafka, worker={"warehouse_dsn": dsn, **_worker(port)})
    metrics = ConsumerMetrics(CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=metrics))
    events = [make_event(i) for i in range(80)]
    try:
        await produce(kafka, events[:40])

        async def written() -> bool:  # the archiver in this process, toxicity in the child
            status, text = await http_get(console + "/metrics")
            lines = text.splitlines() if status == 200 else []
            return task.done() or (
                'gatewatch_consumer_rows_written_total{pipeline="archiver",table="events"} 40.0' in lines
                and 'gatewatch_consumer_rows_written_total{pipeline="toxicity",table="scores"} 80.0' in lines)

        await wait_until(written, timeout=90, every=0.5)
        assert not task.done()
        _, text = await http_get(console + "/metrics")
        headers = [ln for ln in text.splitlines() if ln.startswith("# ")]
        assert len(headers) == len(set(headers))  # families merged by name: one HELP/TYPE each
        assert 'gatewatch_consumer_scored_events_total{pipeline="toxicity",scorer="toxicity"}' in text
        assert 'gatewatch_consumer_lag{pipeline="toxicity"}' in text
        # the parent's own registry has only the archiver: the toxicity series come from the child
        assert metrics.registry.get_sample_value("gatewatch_consumer_rows_written_total",
                                                 {"pipeline": "toxicity", "table": "scores"}) is None
        assert metrics.registry.get_sample_value("gatewatch_consumer_rows_written_total",
                                                 {"pipeline": "archiver", "table": "events"}) == 40
        status, health = await http_get(console + "/healthz")
        tox = health["pipelines"]["toxicity"]
        assert status == 200 and health["status"] == "ok" and tox["running"] is True
        child = psutil.Process(tox["pid"])
        assert child.pid != os.getpid() and child.ppid() == os.getpid()
        assert child.nice() == min(19, psutil.Process().nice() + 10)
        group = Path(f"/proc/{child.pid}/autogroup")
        if group.exists():  # its own session, so its own autogroup: that group's nice must be lowered too
            assert group.read_text().split()[-1] == str(child.nice())
        policies = {int(Path(f"/proc/{child.pid}/task/{t.id}/stat").read_text().rpartition(")")[2].split()[38])
                    for t in child.threads()}
        assert policies == {os.SCHED_IDLE}  # every thread (torch's and the tokenizers' too) runs SCHED_IDLE

        child.send_signal(signal.SIGKILL)  # mid-run: more events arrive while it is down
        await produce(kafka, events[40:])

        async def reported_down() -> bool:
            _, h = await http_get(console + "/healthz")
            return h["status"] == "degraded" and "code -9" in h["pipelines"]["toxicity"].get("error", "")

        await wait_until(reported_down, timeout=10, every=0.05)

        async def restarted() -> bool:
            _, h = await http_get(console + "/healthz")
            t = h["pipelines"]["toxicity"]
            return h["status"] == "ok" and t["running"] and t["pid"] != child.pid and t["restarts"] == 1

        await wait_until(restarted, timeout=60, every=0.5)
        with Warehouse(dsn) as wh:  # a second client on the worker's engine, same process
            await wait_until(lambda: _scores(wh)[1] >= 160 or task.done(), timeout=90, every=0.5)
            final, pairs, raw = _scores(wh)
        assert not task.done()
        assert (final, pairs) == (160, 160) and raw >= 160  # no score missing, one per fact under FINAL
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _start(cfg: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gatewatch", "-c", str(cfg), "worker"],
                            env={**os.environ, "GATEWATCH_HOME": str(home)}, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


async def _child_pid(console: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        _, h = await http_get(console + "/healthz")
        if h and h["pipelines"].get("toxicity", {}).get("running"):
            return int(h["pipelines"]["toxicity"]["pid"])
        await asyncio.sleep(0.3)
    raise AssertionError(f"no running scorer child (worker exit code {proc.poll()})")


async def _committed(kafka: KafkaConfig, group: str) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(kafka.topic, p)) for p in range(kafka.partitions)]
    finally:
        await consumer.stop()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_worker_sigterm_and_sigkill_take_the_child_along(kafka: KafkaConfig, tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    console = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "gatewatch.yaml"
    # the scorer's batch closes 6 s after its first record: it is still open at SIGTERM, and is written
    # through the (stopping) worker and committed before the child exits, or not at all
    slow = {"batch_overrides": {"toxicity": {"max_records": 1000, "max_wait_ms": 6000}}}
    cfg.write_text(json.dumps({"kafka": kafka.model_dump(), "worker": _worker(port, **slow)}))
    log = tmp_path / "worker.log"
    worker = _start(cfg, home, log)
    try:
        child = await _child_pid(console, worker)
        await produce(kafka, [make_event(i) for i in range(30)])
        records = await read_topic(kafka, kafka.topic, 30)
        ends = [max((r.offset + 1 for r in records if r.partition == p), default=None) for p in range(3)]

        async def archived() -> bool:
            _, text = await http_get(console + "/metrics")
            return 'gatewatch_consumer_events_total{pipeline="archiver"} 30.0' in text

        await wait_until(archived, timeout=30, every=0.3)

        async def behind() -> bool:  # the child's lag, refreshed while its batch is open, on this /metrics
            _, text = await http_get(console + "/metrics")
            return 'gatewatch_consumer_lag{pipeline="toxicity"} 30.0' in text

        await wait_until(behind, timeout=3, every=0.2)
        await asyncio.sleep(1.5)  # the scorer group has fetched them too; its batch is still open
        _, text = await http_get(console + "/metrics")
        assert 'gatewatch_consumer_events_total{pipeline="toxicity"}' not in text  # nothing done yet
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 60) == 0, log.read_text()[-3000:]
        assert _gone(child)
        assert await _committed(kafka, "gatewatch-scorer-toxicity") == ends, log.read_text()[-3000:]
        assert await _committed(kafka, "gatewatch-archiver") == ends
        text = log.read_text()
        assert "pipeline toxicity stopped after 1 batches" in text and "scorer process" in text
        with Warehouse(f"chdb://{home.resolve() / 'warehouse'}") as wh:
            assert _scores(wh)[:2] == (60, 60)

        worker = _start(cfg, home, log)  # again, then kill the worker outright
        child = await _child_pid(console, worker)
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait, 10)
        await wait_until(lambda: _gone(child), timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_child_writes_itself_with_a_server_dsn(kafka: KafkaConfig, tmp_path: Path) -> None:
    """Without an embedded warehouse to forward to, the child writes with its own client. No ClickHouse
    server here: a chdb directory that only the child opens stands in for one (same client code path)."""
    dsn = f"chdb://{tmp_path / 'wh'}"
    migrate = "import sys; from consumers.worker import migrate; migrate(sys.argv[1])"
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", migrate, dsn], capture_output=True,
                                   timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    cfg = WorkerConfig.model_validate(_worker(0))
    spec = {"worker": cfg.model_dump(mode="json"), "kafka": kafka.model_dump(mode="json"), "dsn": dsn,
            "dlq_owner": "archiver", "log_level": 20}
    scorers = ScorerProcess(["toxicity"], spec, warehouse=None, stop_timeout_s=10)
    await scorers.start()
    try:
        await produce(kafka, [make_event(i) for i in range(20)])

        def written() -> bool:
            return any(s.labels == {"pipeline": "toxicity", "table": "scores"} and s.value == 40
                       for fam in scorers.metric_families() for s in fam.samples)

        await wait_until(written, timeout=60, every=0.3)
        running, down = scorers.health()
        assert list(running) == ["toxicity"] and not down
    finally:
        await scorers.stop()
    assert scorers.proc is None and scorers.restarts == 0
    with Warehouse(dsn) as wh:
        assert _scores(wh)[:2] == (40, 40)


async def test_a_hung_child_is_killed_and_replaced(kafka: KafkaConfig, warehouse: Warehouse) -> None:
    """A child that is alive but silent (SIGSTOP: no status, no writes) is SIGKILLed after ``stall_s`` and
    restarted; ``/healthz`` says why meanwhile; its uncommitted batch is redone, once under FINAL."""
    cfg = WorkerConfig.model_validate(_worker(0))
    spec = {"worker": cfg.model_dump(mode="json"), "kafka": kafka.model_dump(mode="json"), "dsn": "unused",
            "dlq_owner": "archiver", "log_level": 20}
    scorers = ScorerProcess(["toxicity"], spec, warehouse=warehouse, stop_timeout_s=10, stall_s=3,
                            restart_base_s=0.2)
    server = TestServer(create_console_app(ConsoleDeps(CollectorRegistry(), scorer_process=scorers)))
    await server.start_server()
    healthz = str(server.make_url("/healthz"))
    events = [make_event(i) for i in range(40)]
    await scorers.start()
    try:
        await produce(kafka, events[:20])
        await wait_until(lambda: _scores(warehouse)[1] >= 40, timeout=60, every=0.3)

        async def healthy() -> bool:  # its status after the start (it may have written before sending it)
            return (await http_get(healthz))[1]["status"] == "ok"

        await wait_until(healthy, timeout=10, every=0.2)
        _, health = await http_get(healthz)
        first = health["pipelines"]["toxicity"]
        assert first["stalls"] == 0 and first["silent_s"] < 3
        child = psutil.Process(first["pid"])
        child.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await produce(kafka, events[20:])  # the hung child may have fetched some: redone by the next one

        async def reported() -> bool:
            _, h = await http_get(healthz)
            return "stalled" in h["pipelines"]["toxicity"].get("error", "")

        await wait_until(reported, timeout=15, every=0.1)
        assert 3 <= time.monotonic() - stopped < 8
        assert _gone(child.pid)
        _, health = await http_get(healthz)
        assert health["status"] == "degraded" and health["pipelines"]["toxicity"]["stalls"] == 1

        async def replaced() -> bool:
            _, h = await http_get(healthz)
            t = h["pipelines"]["toxicity"]
            return t["running"] and t["pid"] != child.pid and t["restarts"] == 1

        await wait_until(replaced, timeout=60, every=0.3)
        await wait_until(lambda: _scores(warehouse)[1] >= 80, timeout=60, every=0.3)
        assert _scores(warehouse)[:2] == (80, 80)  # nothing missing, one row per fact under FINAL
    finally:
        await scorers.stop()
        await server.close()
    assert scorers.stalls == 1 and scorers.restarts == 1
