"""Pipelines that cannot start are retried until they run, with real components (Tansu, chdb, the
profanity-check toxicity backend): a worker started while nothing listens on the broker's port, one whose
broker is frozen (SIGSTOP) during start-up with the scorers in the child process, a permanent failure
(model files missing) retried at the cap, and a stop while attempts hang. ``/healthz`` says which pipeline
is down, why, since when, for how long and after how many attempts; the metrics move."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, TopicAuthorizationFailedError
from prometheus_client import CollectorRegistry

from consumers.contracts import PermanentError, TableRows, TransientError
from consumers.metrics import ConsumerMetrics
from consumers.models.loading import ModelUnavailable
from consumers.pipeline import RetryPolicy
from consumers.sources.kafka import TopicsReady
from consumers.startup import PipelineStarter, is_permanent
from consumers.warehouse import Warehouse
from consumers.worker import run_worker
from gatewatch.config import Settings
from gatewatch.procs import TansuBroker, free_port
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.consumers.conftest import GROUP_OPTIONS, http_get, make_event, make_pipeline, produce, wait_until

pytestmark = pytest.mark.timeout(90)
SCORERS = {"device": "cpu", "toxicity": {"backend": "profanity"}}
FAST_RETRY = {"start_retry_base_s": 0.2, "start_retry_max_s": 1.0}


def _kafka(port: int, request_timeout_ms: int = 5000) -> KafkaConfig:
    suffix = uuid.uuid4().hex[:8]
    return KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", topic=f"events-{suffix}", dlq_topic=f"dlq-{suffix}",
                       partitions=3, request_timeout_ms=request_timeout_ms)


def _settings(home: Path, kafka: KafkaConfig, console_port: int, **worker: Any) -> Settings:
    return Settings(home=home, kafka=kafka, worker={
        "warehouse_dsn": f"chdb://{home / 'wh'}", "pipelines": ["archiver", "toxicity"], "console_port": console_port,
        "scorer_process": "inline", "batch": {"max_records": 50, "max_wait_ms": 200}, "fetch_max_wait_ms": 100,
        "scorers": SCORERS, "start_timeout_s": 7, **FAST_RETRY, **GROUP_OPTIONS, **worker})


def _sample(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from an exposition, labels in any order; None when absent."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series == name and set(rest.rstrip("}").split(",") if rest else []) == {
                f'{k}="{v}"' for k, v in labels.items()}:
            return float(value)
    return None


def _scores(dsn: str) -> tuple[int, int]:
    with Warehouse(dsn) as wh:  # a second client on the worker's engine, same process
        return wh.client.query("SELECT (SELECT count() FROM gatewatch.events FINAL), "
                               "(SELECT count() FROM gatewatch.scores FINAL WHERE scorer = 'toxicity')").result_rows[0]


@pytest.fixture
def frozen_broker() -> Iterator[TansuBroker]:
    """A broker of its own (the session's is shared), SIGCONTed and stopped at teardown."""
    broker = TansuBroker().start()
    try:
        yield broker
    finally:
        if broker.proc is not None:
            os.kill(broker.proc.pid, signal.SIGCONT)
        broker.stop()


def _freeze(broker: TansuBroker, sig: int) -> None:
    assert broker.proc is not None
    os.kill(broker.proc.pid, sig)


async def test_worker_pipelines_start_once_the_broker_listens(tmp_path: Path) -> None:
    """Nothing listens on the broker port at start-up: every pipeline retries (transient, backing off),
    ``/healthz`` is degraded with the details, then Tansu starts on that port and everything comes up."""
    port, console_port = free_port(), free_port()
    kafka = _kafka(port)
    console = f"http://127.0.0.1:{console_port}"
    metrics = ConsumerMetrics(CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(_settings(tmp_path, kafka, console_port), stop_event=stop, metrics=metrics))
    broker: TansuBroker | None = None
    try:
        async def retried() -> bool:
            _, h = await http_get(console + "/healthz")
            return task.done() or (bool(h) and all(h["pipelines"].get(n, {}).get("attempts", 0) >= 3
                                                   for n in ("archiver", "toxicity")))

        await wait_until(retried, timeout=20, every=0.2)
        assert not task.done()
        status, health = await http_get(console + "/healthz")
        assert status == 200 and health["status"] == "degraded"
        for name in ("archiver", "toxicity"):
            h = health["pipelines"][name]
            assert h["running"] is False and h["state"] == "retrying" and h["kind"] == "transient", h
            assert h["error"].startswith("KafkaConnectionError") and "Unable to bootstrap" in h["error"], h
            assert h["down_for_s"] > 0.3 and h["since"].endswith("Z") and 0 <= h["retry_in_s"] <= 1.0, h
        _, text = await http_get(console + "/metrics")
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="toxicity") == 0
        failures = _sample(text, "gatewatch_consumer_pipeline_start_failures_total", pipeline="archiver",
                           kind="transient")
        assert failures is not None and failures >= 3

        broker = TansuBroker(port=port).start()

        async def healthy() -> bool:
            _, h = await http_get(console + "/healthz")
            return task.done() or h.get("status") == "ok"

        await wait_until(healthy, timeout=30, every=0.3)
        assert not task.done()
        _, health = await http_get(console + "/healthz")
        assert all(h["running"] and h["state"] == "running" and h["attempts"] >= 4
                   for h in health["pipelines"].values()), health
        await produce(kafka, [make_event(i) for i in range(30)])
        await wait_until(lambda: task.done() or metrics.rows_written.labels("toxicity", "scores")._value.get() >= 60,
                         timeout=30, every=0.3)
        assert not task.done()
        _, text = await http_get(console + "/metrics")
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="archiver") == 1
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="toxicity") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        if broker is not None:
            broker.stop()
    assert _scores(f"chdb://{tmp_path / 'wh'}") == (30, 60)


async def test_child_pipelines_come_up_after_a_frozen_broker(frozen_broker: TansuBroker, tmp_path: Path) -> None:
    """The broker is SIGSTOPped before the worker starts (it accepts connections, answers nothing): start
    attempts in the worker (archiver) and in the scorer child (toxicity) time out and are retried; the
    child's retry state reaches the worker's ``/healthz``; after SIGCONT both run and score. aiokafka's own
    request timeout is set longer than the start timeout: only the latter ends the hanging attempts."""
    kafka = _kafka(frozen_broker.port, request_timeout_ms=30_000)
    console_port = free_port()
    console = f"http://127.0.0.1:{console_port}"
    settings = _settings(tmp_path, kafka, console_port, scorer_process="child")
    _freeze(frozen_broker, signal.SIGSTOP)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=ConsumerMetrics(CollectorRegistry())))
    try:
        async def timed_out() -> bool:  # each side's first attempt gave up (7 s), the next one is on
            _, h = await http_get(console + "/healthz")
            return task.done() or (bool(h) and all(h["pipelines"].get(n, {}).get("attempts", 0) >= 2
                                                   for n in ("archiver", "toxicity")))

        await wait_until(timed_out, timeout=30, every=0.2)
        assert not task.done()
        status, health = await http_get(console + "/healthz")
        assert status == 200 and health["status"] == "degraded"
        tox, arch = health["pipelines"]["toxicity"], health["pipelines"]["archiver"]
        for h in (tox, arch):
            assert h["running"] is False and h["state"] == "retrying" and h["kind"] == "transient", h
            assert h["error"].startswith("TransientError: the broker did not answer within 7s"), h
        assert tox["process"] == "scorer-child" and tox["down_for_s"] > 7 and tox["since"].endswith("Z"), tox
        _, text = await http_get(console + "/metrics")  # the child's series, merged into the worker's exposition
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="toxicity") == 0
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="archiver") == 0
        assert (_sample(text, "gatewatch_consumer_pipeline_start_failures_total", pipeline="toxicity",
                        kind="transient") or 0) >= 1

        _freeze(frozen_broker, signal.SIGCONT)

        async def healthy() -> bool:
            _, h = await http_get(console + "/healthz")
            return task.done() or h.get("status") == "ok"

        await wait_until(healthy, timeout=40, every=0.3)
        assert not task.done()
        await produce(kafka, [make_event(i) for i in range(20)])

        async def scored() -> bool:
            _, text = await http_get(console + "/metrics")
            return task.done() or _sample(text, "gatewatch_consumer_rows_written_total", pipeline="toxicity",
                                          table="scores") == 40

        await wait_until(scored, timeout=30, every=0.3)
        assert not task.done()
        _, text = await http_get(console + "/metrics")
        assert _sample(text, "gatewatch_consumer_pipeline_up", pipeline="toxicity") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 40)


async def test_stop_while_start_attempts_hang_is_prompt(frozen_broker: TansuBroker, tmp_path: Path) -> None:
    """Frozen broker, long start timeout: the attempts in the worker and in the child hang; a stop cancels
    them and the worker (and its child) are done within seconds."""
    kafka = _kafka(frozen_broker.port, request_timeout_ms=60_000)
    console_port = free_port()
    console = f"http://127.0.0.1:{console_port}"
    settings = _settings(tmp_path, kafka, console_port, scorer_process="child", start_timeout_s=60)
    _freeze(frozen_broker, signal.SIGSTOP)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=ConsumerMetrics(CollectorRegistry())))
    try:
        async def hanging() -> bool:  # both first attempts in flight; the child reports
            _, h = await http_get(console + "/healthz")
            return task.done() or (bool(h) and all(h["pipelines"].get(n, {}).get("state") == "starting"
                                                   for n in ("archiver", "toxicity")))

        await wait_until(hanging, timeout=30, every=0.2)
        await asyncio.sleep(1)
        assert not task.done()
    finally:
        began = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 30)
    assert time.monotonic() - began < 8


@pytest.mark.parametrize(("exc", "permanent"), [
    (KafkaConnectionError("Unable to bootstrap"), False), (KafkaTimeoutError(), False), (TimeoutError(), False),
    (NodeNotReadyError(), False), (TransientError("broker"), False), (ConnectionRefusedError(), False),
    (OSError("network"), False), (RuntimeError("unknown"), False),
    (ModelUnavailable("no checkpoint"), True), (PermanentError("bad"), True), (TopicAuthorizationFailedError(), True),
    (FileNotFoundError(2, "missing"), True), (ImportError("no torch"), True), (ValueError("bad value"), True),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_failure_kinds(exc: BaseException, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


class ModelFileScorer:
    """A fake scorer whose ``start`` needs a model file: ``ModelUnavailable`` (permanent) until it exists."""

    name = "modelfile"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        if not self.path.exists():
            raise ModelUnavailable(f"no model at {self.path}")

    async def stop(self) -> None: ...

    async def score(self, events: Sequence[Event]) -> TableRows:
        return {}


async def test_permanent_failure_retries_at_the_cap(kafka: KafkaConfig, warehouse: Warehouse,
                                                    tmp_path: Path) -> None:
    """A missing model is a configuration problem: reported as permanent and retried only at the cap (not
    from the base), so copying the files in is picked up without a restart."""
    with pytest.raises(ModelUnavailable) as missing:  # the real scorer: Detoxify without its checkpoint
        from consumers.scorers import SCORER_FACTORIES
        from consumers.scorers.config import ScorersConfig

        cfg = ScorersConfig.model_validate({"device": "cpu", "toxicity": {
            "backend": "detoxify", "checkpoint_path": str(tmp_path / "nope.ckpt")}})
        await SCORER_FACTORIES["toxicity"](cfg).start()
    assert is_permanent(missing.value)

    metrics = ConsumerMetrics(CollectorRegistry())
    scorer = ModelFileScorer(tmp_path / "model.bin")
    pipeline = make_pipeline(kafka, warehouse, metrics, name="modelfile", scorers=[scorer])
    starter = PipelineStarter([pipeline], metrics=metrics, retry=RetryPolicy(0.01, 1.0),
                              prepare=TopicsReady(kafka, 5))
    failures = metrics.start_failures.labels("modelfile", "permanent")
    starter.start()
    try:
        await wait_until(lambda: failures._value.get() >= 2, timeout=10, every=0.02)
        began, attempts = time.monotonic(), scorer.starts
        h = starter.health()["modelfile"]
        assert h["state"] == "retrying" and h["kind"] == "permanent", h
        assert h["error"].startswith("ModelUnavailable: no model at") and 0 < h["retry_in_s"] <= 1.0, h
        await asyncio.sleep(2.0)
        # from the base (0.01 s doubling) there would be ~8 more attempts by now; at the cap (0.5-1 s) <= 4
        assert scorer.starts - attempts <= 5
        assert failures._value.get() == scorer.starts
        assert metrics.pipeline_up.labels("modelfile")._value.get() == 0
        (tmp_path / "model.bin").write_bytes(b"weights")  # the operator copies the model in
        await wait_until(lambda: starter.health()["modelfile"]["running"], timeout=10, every=0.05)
        assert metrics.pipeline_up.labels("modelfile")._value.get() == 1
        assert time.monotonic() - began < 10
    finally:
        await starter.stop()
    assert starter.health()["modelfile"]["state"] == "stopped"
    assert metrics.pipeline_up.labels("modelfile")._value.get() == 0
