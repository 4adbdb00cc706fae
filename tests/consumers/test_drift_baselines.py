"""Drift baselines across worker restarts, with real components (Tansu, chdb, all-MiniLM-L6-v2 from its
wheel): the drift pipeline in the scorer child process (which cannot open chdb: its baseline goes to the
worker as one more row and comes back through the worker on the channel) or in the worker itself
collects a baseline; the worker is restarted on the same chdb directory and a drifted window is flagged
against that baseline; ``gatewatch drift reset`` (through the console) makes the running scorer collect a
new one. The child's reads on a socketpair answered as the worker answers them; the console's
``/api/drift`` routes: scoping, admin-only reset, audit rows."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from consumers.child.channel import Channel
from consumers.child.reads import ParentReads, answer_read
from consumers.console import TOKENS_FILE, TokenStore
from consumers.contracts import TransientError
from consumers.metrics import ConsumerMetrics
from consumers.scorers.drift_store import BaselineStore, Identity, StoredBaseline, baseline_row, list_baselines
from consumers.scorers.reads import LocalReads
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.sinks.forward import ParentLink
from consumers.warehouse import Warehouse
from consumers.worker import ConsoleDeps, create_console_app, run_worker
from gatewatch.cli import build_parser, cmd_drift
from gatewatch.config import Settings
from gatewatch.procs import free_port
from schemas.config import KafkaConfig
from schemas.events import Event
from tests.audit.conftest import make_tokens
from tests.consumers.conftest import GROUP_OPTIONS, make_event, produce, wait_until
from tests.scorers.test_drift import COOKING, FINANCE, FOOD, MONEY, texts

pytestmark = pytest.mark.timeout(300)
DRIFT = {"fields": ["prompt"], "baseline_events": 30, "window_events": 30, "min_window": 20, "window_seconds": None,
         "permutations": 100, "baseline_refresh": 1}


def _settings(home: Path, kafka: KafkaConfig, port: int, mode: str) -> Settings:
    return Settings(home=home, kafka=kafka, worker={
        "warehouse_dsn": f"chdb://{home / 'warehouse'}", "pipelines": ["drift"], "scorer_process": mode,
        "console_port": port, "batch": {"max_records": 30, "max_wait_ms": 200}, "fetch_max_wait_ms": 100,
        "scorers": {"device": "cpu", "drift": DRIFT}, **GROUP_OPTIONS})


def _events(start: int, prompts: Sequence[str]) -> list[Event]:
    return [make_event(start + i, "acme", request={"messages": [{"role": "user", "content": p}]})
            for i, p in enumerate(prompts)]


def _query(wh: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in wh.client.query(sql).result_rows]


def _windows(wh: Warehouse) -> list[tuple[Any, ...]]:
    """(window_start, drifted, baseline_size) of each closed window, oldest first."""
    return _query(wh, "SELECT window_start, min(drifted), max(drifted), any(baseline_size) FROM gatewatch.drift "
                      "FINAL WHERE tenant = 'acme' GROUP BY window_start HAVING count() = 3 ORDER BY window_start")


def _labels(wh: Warehouse, events: Sequence[Event]) -> list[str]:
    ids = "', '".join(ev.event_id for ev in events)
    return [r[0] for r in _query(wh, f"SELECT label FROM gatewatch.scores FINAL WHERE scorer = 'drift' "
                                     f"AND event_id IN ('{ids}')")]


async def _console_up(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status in (200, 503)
    except aiohttp.ClientConnectionError:
        return False


@contextlib.asynccontextmanager
async def _worker(settings: Settings):  # type: ignore[no-untyped-def]
    """The worker running (and a second client on its warehouse, same process, same engine)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, metrics=ConsumerMetrics(CollectorRegistry())))
    try:  # the console serves once the warehouse is migrated
        await wait_until(lambda: task.done() or _console_up(settings.worker.console_port), timeout=60, every=0.2)
        with Warehouse(settings.worker.dsn(settings.home)) as wh:
            yield wh, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 90)


async def _until(task: asyncio.Task[None], cond: Any, timeout: float = 120) -> None:
    async def check() -> bool:
        assert not task.done(), "the worker stopped"
        return bool(await asyncio.to_thread(cond))

    await wait_until(check, timeout=timeout, every=0.5)


@pytest.mark.parametrize("mode", ["child", "inline"])
async def test_a_restarted_worker_keeps_the_baseline_and_a_reset_starts_a_new_one(
        kafka: KafkaConfig, tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    settings = _settings(tmp_path, kafka, port, mode)
    baseline, quiet = _events(0, texts(COOKING, FOOD, 30, seed=1)), _events(30, texts(COOKING, FOOD, 30, seed=2))
    async with _worker(settings) as (wh, task):
        await produce(kafka, baseline + quiet)
        await _until(task, lambda: len(_windows(wh)) == 1)
        (stored,) = list_baselines(wh.client)
        assert stored["baseline_size"] == 30 and _windows(wh)[0][1:] == (0, 0, 30)

    shifted = _events(60, texts(FINANCE, MONEY, 30, seed=3))
    async with _worker(settings) as (wh, task):  # restarted on the same chdb directory
        await produce(kafka, shifted)
        await _until(task, lambda: len(_windows(wh)) == 2)
        assert _windows(wh)[1][1:] == (1, 1, 30)  # drifted on every metric, against the 30-event baseline
        assert set(_labels(wh, shifted)) == {""} and [r["baseline_id"] for r in list_baselines(wh.client)] == [
            stored["baseline_id"]]

        args = build_parser().parse_args(["-c", str(tmp_path / "gatewatch.yaml"), "drift", "reset", "--tenant",
                                          "acme", "--console", f"http://127.0.0.1:{port}", "--token",
                                          (tmp_path / "console-token").read_text().strip()])
        capsys.readouterr()
        assert await asyncio.to_thread(cmd_drift, args) == 0
        out = capsys.readouterr().out
        assert "reset 1 drift baseline(s)" in out and stored["baseline_id"] in out
        await asyncio.sleep(1.5)  # > drift.baseline_refresh: the running scorer looks again
        again = _events(90, texts(FINANCE, MONEY, 30, seed=4))
        await produce(kafka, again)
        await _until(task, lambda: len(list_baselines(wh.client)) == 1 and _labels(wh, again).count("baseline") == 30)
        (new,) = list_baselines(wh.client)
        assert new["baseline_id"] != stored["baseline_id"] and new["collected_from"] >= again[0].ts_end
        states = [r["state"] for r in list_baselines(wh.client, states=("active", "reset"))]
        assert sorted(states) == ["active", "reset"]


def _row(tenant: str, model: str) -> dict[str, Any]:
    ident = Identity("v1-test", "{}", "fake", "1", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    base = StoredBaseline(f"b-{tenant}-{model}", 3, np.array([1.0, 0.0], np.float32),
                          np.eye(2, dtype=np.float32)[[0, 0, 1]], now, now, now)
    return baseline_row((tenant, model, "prompt"), ident, base)


async def test_console_drift_routes(tmp_path: Path, warehouse: Warehouse) -> None:
    sink = ClickHouseSink(warehouse.new_client)
    await sink.start()
    await sink.write({"drift_baselines": [_row("acme", "m1"), _row("acme", "m2"), _row("globex", "m1")]})
    tokens = make_tokens(tmp_path)
    deps = ConsoleDeps(CollectorRegistry(), warehouse, tokens=TokenStore(tmp_path / TOKENS_FILE))
    async with TestClient(TestServer(create_console_app(deps))) as client:
        async def call(method: str, path: str, token: str, **kw: Any) -> tuple[int, Any]:
            resp = await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
            return resp.status, await resp.json()

        status, body = await call("GET", "/api/drift/baselines", tokens.acme)
        assert status == 200 and {(b["tenant"], b["model"]) for b in body["baselines"]} == {("acme", "m1"),
                                                                                          ("acme", "m2")}
        assert "sample" not in body["baselines"][0] and body["baselines"][0]["sample_size"] == 3
        status, body = await call("GET", "/api/drift/baselines", tokens.acme, params={"tenant": "globex"})
        assert status == 403
        status, body = await call("GET", "/api/drift/baselines", tokens.admin, params={"state": "bogus"})
        assert status == 400
        status, body = await call("POST", "/api/drift/reset", tokens.acme, json={"tenant": "acme"})
        assert status == 403 and body["error"]["code"] == "forbidden"  # resetting needs an admin token
        status, body = await call("POST", "/api/drift/reset", tokens.admin, json={"model": "m1"})
        assert status == 400  # the tenant is required
        status, body = await call("POST", "/api/drift/reset", tokens.admin, json={"tenant": "acme", "model": "m1"})
        assert status == 200 and [(r["tenant"], r["model"], r["state"]) for r in body["reset"]] == [
            ("acme", "m1", "reset")]
        status, body = await call("GET", "/api/drift/baselines", tokens.admin)
        assert {(b["tenant"], b["model"]) for b in body["baselines"]} == {("acme", "m2"), ("globex", "m1")}
        status, body = await call("GET", "/api/drift/baselines", tokens.admin, params={"state": "reset"})
        assert [(b["tenant"], b["model"]) for b in body["baselines"]] == [("acme", "m1")]
    audited = _query(warehouse, "SELECT endpoint, status FROM gatewatch.audit_queries ORDER BY endpoint, status")
    assert audited == [("drift.baselines", 200), ("drift.baselines", 200), ("drift.baselines", 200),
                       ("drift.baselines", 400), ("drift.baselines", 403),
                       ("drift.reset", 200), ("drift.reset", 400), ("drift.reset", 403)]


async def test_child_reads_answered_by_the_worker_over_the_channel(warehouse: Warehouse) -> None:
    """The child's ``ParentReads`` on a real socketpair, answered as the supervisor answers (``answer_read``
    on a ``LocalReads`` of a real chdb warehouse): baselines arrive bit for bit, failures are transient."""
    sink = ClickHouseSink(warehouse.new_client)
    await sink.start()
    row = _row("acme", "m1")
    await sink.write({"drift_baselines": [row]})
    a, b = socket.socketpair()
    parent, child = await Channel.open(a), await Channel.open(b)
    reads = LocalReads(warehouse.new_client)

    async def worker() -> None:
        while (msg := await parent.recv()) is not None:
            await parent.send({"t": "ack", "id": msg["id"], **await answer_read(reads, msg)})

    link = ParentLink(child)
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(worker())]
    try:
        store = BaselineStore(ParentReads(link, timeout_s=10))
        got = await store.load("v1-test", [("acme", "m1", "prompt"), ("acme", "none", "prompt")])
        assert list(got) == [("acme", "m1", "prompt")]
        b0 = got[("acme", "m1", "prompt")]
        assert b0.baseline_id == row["baseline_id"] and b0.size == 3 and b0.sample.shape == (3, 2)
        np.testing.assert_array_equal(b0.sample.ravel(), np.asarray(row["sample"], np.float32))
        np.testing.assert_array_equal(b0.centroid, np.asarray(row["centroid"], np.float32))
        assert await store.current("v1-test") == {("acme", "m1", "prompt"): row["baseline_id"]}
        assert await store.load("v1-other", [("acme", "m1", "prompt")]) == {}  # another identity
        with pytest.raises(TransientError, match="no warehouse read named"):
            await ParentReads(link).read("drift.nope", {})
        with pytest.raises(TransientError, match="keys must be a list"):
            await ParentReads(link).read("drift.baselines", {"identity": "x", "keys": "acme"})
    finally:
        await child.close()
        await parent.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (await answer_read(None, {"name": "drift.current", "args": {}}))["kind"] == "permanent"
    assert (await answer_read(reads, {"name": 3, "args": {}}))["kind"] == "permanent"
