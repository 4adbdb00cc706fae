"""Audit tests on real chdb (through clickhouse-connect) and the real console app, in process.

chdb allows one data directory per process at a time: the seeded warehouse is module-scoped (read-only
tests share it) and closed at module end; tests that change data open their own (``fresh``) in modules
that do not use the shared one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from consumers.archiver import event_to_row
from consumers.console import TOKENS_FILE, TokenStore, create_token
from consumers.sinks.clickhouse import columns_of
from consumers.warehouse import Warehouse, apply_migrations
from consumers.worker import ConsoleDeps, create_console_app
from schemas.events import Event
from tests.consumers.conftest import BASE_TS, make_event

N_EVENTS = 60


@dataclass
class Tokens:
    home: Path
    admin: str
    acme: str
    multi: str  # acme + globex


def make_tokens(home: Path) -> Tokens:
    """An admin token, one for acme and one for acme + globex, in ``home``'s console token file."""
    path = home / TOKENS_FILE
    return Tokens(home, create_token(path, ["*"])[0], create_token(path, ["acme"])[0],
                  create_token(path, ["acme", "globex"])[0])


def seed_events() -> list[Event]:
    out = []
    for i in range(N_EVENTS):
        tenant = ("acme", "globex", "initech")[i % 3]
        out.append(make_event(
            i, tenant, key_id=f"key-{i % 4}", end_user=f"user-{i % 5}",
            request_model=("gpt-4o-mini", "llama")[i % 2], response_model=("m-small", "m-large")[i % 2],
            ts_start=BASE_TS + timedelta(minutes=i), ts_end=BASE_TS + timedelta(minutes=i, seconds=1),
            ts_first_token=None, outcome=("completed", "failed", "denied", "completed")[i % 4],
            policy={"decision": ("allow", "flag", "deny")[i % 3], "rule_ids": [f"rule-{i % 2}"]},
            pii_counts={"EMAIL_ADDRESS": 1} if i % 5 == 0 else ({"PHONE_NUMBER": 2} if i % 5 == 1 else {})))
    return out


def insert_events(warehouse: Warehouse, events: list[Event], rows: list[dict[str, Any]] | None = None) -> None:
    rows = rows if rows is not None else [event_to_row(e) for e in events]
    cols = columns_of(rows)
    warehouse.client.insert("gatewatch.events", [[r.get(c) for c in cols] for r in rows], column_names=cols)


def insert_scores(warehouse: Warehouse, events: list[Event]) -> None:
    cols = ["event_id", "ts", "tenant", "request_model", "scorer", "metric", "target", "value", "label",
            "backend", "model", "model_version"]
    rows = [[e.event_id, e.ts_start, e.tenant, e.request_model or "", "toxicity", "toxicity", "response",
             i / 10, "", "cpu", "m", "1"] for i, e in enumerate(events[:10])]
    warehouse.client.insert("gatewatch.scores", rows, column_names=cols)


def open_warehouse(path: Path) -> Warehouse:
    wh = Warehouse(f"chdb://{path}")
    apply_migrations(wh.client)
    return wh


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    return make_tokens(tmp_path_factory.mktemp("home"))


async def serve(warehouse: Warehouse, tokens: Tokens) -> AsyncIterator[TestClient]:
    deps = ConsoleDeps(CollectorRegistry(), warehouse, tokens=TokenStore(tokens.home / TOKENS_FILE))
    async with TestClient(TestServer(create_console_app(deps))) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Warehouse]:
    wh = open_warehouse(tmp_path / "warehouse")
    try:
        yield wh
    finally:
        wh.close()
