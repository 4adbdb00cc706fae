"""Fixtures for the alert tests: a real chdb warehouse (one open at a time in this process, as chdb wants;
never fork), seeders for events/scores/drift, and a real aiohttp webhook receiver on a free port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from consumers.alerts.metrics import AlertMetrics
from consumers.archiver import event_to_row
from consumers.warehouse import Warehouse, apply_migrations
from tests.consumers.conftest import BASE_TS, make_event

NOW = BASE_TS + timedelta(minutes=30)  # the pinned evaluation clock
SCORE_COLUMNS = ("event_id", "ts", "tenant", "request_model", "scorer", "metric", "target", "value", "label",
                 "backend", "model", "model_version")
DRIFT_COLUMNS = ("window_start", "window_end", "tenant", "model", "field", "metric", "value", "baseline_size",
                 "window_size", "drifted", "backend", "embed_model")


@pytest.fixture(scope="module")
def _module_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    path: Path = tmp_path_factory.mktemp("alerts") / "warehouse"
    with Warehouse(f"chdb://{path}") as wh:
        apply_migrations(wh.client)
        yield wh


@pytest.fixture
def warehouse(_module_warehouse: Warehouse) -> Warehouse:
    """One chdb directory per test module (migrations take seconds); tables emptied for each test."""
    for table in ("events", "scores", "drift", "alerts"):
        _module_warehouse.client.command(f"TRUNCATE TABLE gatewatch.{table}")
    return _module_warehouse


@pytest.fixture
def metrics() -> AlertMetrics:
    return AlertMetrics(CollectorRegistry())


def seed_events(wh: Warehouse, specs: list[dict[str, Any]]) -> None:
    """Each spec: ts (datetime), tenant, and Event overrides (outcome, latency_ms, policy, ...)."""
    rows = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        ts: datetime = spec.pop("ts")
        ev = make_event(i, tenant=spec.pop("tenant", "acme"), ts_start=ts, ts_end=ts + timedelta(seconds=1),
                        ts_first_token=ts + timedelta(milliseconds=100), **spec)
        rows.append(event_to_row(ev))
    cols = list(rows[0])
    wh.client.insert("gatewatch.events", [[r[c] for c in cols] for r in rows], column_names=cols)


def seed_scores(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    base = {"request_model": "gpt-4o-mini", "target": "response", "backend": "cpu", "model": "m",
            "model_version": "1", "label": "ok"}
    full = [{**base, **r} for r in rows]
    wh.client.insert("gatewatch.scores", [[r[c] for c in SCORE_COLUMNS] for r in full], column_names=SCORE_COLUMNS)


def seed_drift(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    base = {"model": "gpt-4o-mini", "field": "prompt", "metric": "mmd2_pvalue", "value": 0.01,
            "baseline_size": 100, "window_size": 50, "backend": "cpu", "embed_model": "minilm"}
    full = [{**base, **r} for r in rows]
    wh.client.insert("gatewatch.drift", [[r[c] for c in DRIFT_COLUMNS] for r in full], column_names=DRIFT_COLUMNS)


@dataclass
class Receiver:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver recording JSON bodies; set ``status`` to make it answer with an error."""
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.requests.append(await request.json())
        state.headers.append(dict(request.headers))
        return web.Response(status=state.status, text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


def closed_port_url() -> str:
    """A URL nothing listens on (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
