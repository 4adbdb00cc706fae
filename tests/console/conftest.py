"""Console tests: the dashboard API in process on a seeded chdb warehouse, and the page in Chromium against a
real ``gatewatch worker``. chdb allows one open data directory per process: the API tests' warehouse is
module-scoped and closed before the browser module seeds its own (which the worker process then opens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from consumers.console import TOKENS_FILE, TokenStore
from consumers.warehouse import Warehouse, apply_migrations
from consumers.worker import ConsoleDeps, create_console_app
from tests.audit.conftest import Tokens, make_tokens
from tests.console import seed


def seeded_warehouse(path: Path, now: datetime) -> tuple[Warehouse, seed.Seed]:
    wh = Warehouse(f"chdb://{path}")
    apply_migrations(wh.client)
    data = seed.build(now)
    seed.insert(wh.client, data)
    return wh, data


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, seed.Seed, Tokens]]:
    home = tmp_path_factory.mktemp("console")
    wh, data = seeded_warehouse(home / "warehouse", datetime.now(UTC))
    try:
        yield wh, data, make_tokens(home)
    finally:
        wh.close()


@pytest.fixture
async def console(demo: tuple[Warehouse, seed.Seed, Tokens]) -> AsyncIterator[TestClient]:
    wh, _, tokens = demo
    deps = ConsoleDeps(CollectorRegistry(), wh, tokens=TokenStore(tokens.home / TOKENS_FILE))
    async with TestClient(TestServer(create_console_app(deps))) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
