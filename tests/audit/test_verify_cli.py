"""Tamper evidence (verify) and the CLI (`gatewatch audit`, `audit verify`, `query`, `console-token`) against
the in-process console on a fresh chdb warehouse per test."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient

from consumers.archiver import event_to_row
from consumers.audit.integrity import content_hash
from consumers.console import TokenStore
from consumers.warehouse import Warehouse
from gatewatch.cli import main
from tests.audit.conftest import Tokens, insert_events, seed_events, serve
from tests.consumers.conftest import make_event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(fresh: Warehouse, tokens: Tokens) -> AsyncIterator[TestClient]:
    async for client in serve(fresh, tokens):
        yield client


async def cli(api: TestClient, token: str, *argv: str) -> int:
    url = str(api.make_url("")).rstrip("/")
    cmd, *rest = argv
    sub = [cmd, "--console", url, "--token", token] if cmd in ("audit", "query") else [cmd]
    return await asyncio.to_thread(main, [*sub, *rest])


def test_hash_survives_the_round_trip(fresh: Warehouse) -> None:
    events = seed_events()[:5]
    insert_events(fresh, events)
    from consumers.audit.verify import verify

    report = verify(fresh.client)
    assert report["ok"] and report["checked"] == 5 and report["unhashed"] == 0
    assert event_to_row(events[0])["content_hash"] == content_hash(events[0]).strip()


async def test_verify_detects_altered_rows_gaps_and_duplicates(api: TestClient, fresh: Warehouse, tokens: Tokens,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    events = [make_event(i, "acme") for i in range(10)]
    insert_events(fresh, events)
    assert await cli(api, tokens.admin, "audit", "verify") == 0
    # 0. an event removed (sequence 5 goes missing)
    fresh.client.command("DELETE FROM gatewatch.events WHERE event_id = {id:String}",
                         parameters={"id": events[5].event_id})
    # 1. re-insert with a changed field and the old hash (the later row wins in FINAL)
    row = event_to_row(events[2])
    row["response_text"] = "something else"
    insert_events(fresh, [], [row])
    # 2. ALTER TABLE UPDATE in place
    fresh.client.command("ALTER TABLE gatewatch.events UPDATE cost_usd = 99 WHERE event_id = {id:String} "
                         "SETTINGS mutations_sync = 1", parameters={"id": events[7].event_id})
    # 3. a second event claiming sequence 3
    insert_events(fresh, [make_event(3, "acme")])
    capsys.readouterr()
    assert await cli(api, tokens.admin, "audit", "verify") == 1
    out = capsys.readouterr().out
    assert "altered rows: 2" in out and events[2].event_id in out and events[7].event_id in out
    assert "missing 5" in out and "duplicate #3" in out
    resp = await api.get("/api/audit/verify", headers={"Authorization": f"Bearer {tokens.admin}"})
    report = await resp.json()
    inst = report["instances"]["gw-1"]
    assert not report["ok"] and report["altered_count"] == 2
    assert inst["missing_ranges"] == [[5, 5]] and inst["missing_count"] == 1 and inst["duplicate_count"] == 1


async def test_cli_exports_and_query(api: TestClient, fresh: Warehouse, tokens: Tokens, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    events = seed_events()
    insert_events(fresh, events)
    acme = {e.event_id for e in events if e.tenant == "acme"}
    out_csv, out_pq = tmp_path / "a.csv", tmp_path / "a.parquet"
    assert await cli(api, tokens.acme, "audit", "--format", "csv", "--output", str(out_csv)) == 0
    with out_csv.open() as f:
        assert {r["event_id"] for r in csv.DictReader(f)} == acme
    assert await cli(api, tokens.admin, "audit", "--tenant", "acme", "--format", "parquet", "-o", str(out_pq)) == 0
    assert set(pq.read_table(out_pq).column("event_id").to_pylist()) == acme
    capsys.readouterr()
    assert await cli(api, tokens.admin, "audit", "--tenant", "globex", "--outcome", "failed") == 0
    lines = capsys.readouterr().out.splitlines()
    assert {json.loads(x)["event_id"] for x in lines} == {
        e.event_id for e in events if e.tenant == "globex" and e.outcome == "failed"}
    assert await cli(api, tokens.admin, "audit", "--tenant", "acme", "--order", "desc") == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    keys = [(r["ts_start"], r["event_id"]) for r in rows]
    assert {r["event_id"] for r in rows} == acme and keys == sorted(keys, reverse=True)
    assert await cli(api, tokens.acme, "audit", "--tenant", "globex") == 2
    assert "403" in capsys.readouterr().err
    assert await cli(api, tokens.admin, "query", "SELECT tenant, count() AS n FROM gatewatch.events "
                                                  "GROUP BY tenant ORDER BY tenant") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["tenant", "n"] and "acme" in out and "(3 rows)" in out
    assert await cli(api, tokens.admin, "query", "DELETE FROM gatewatch.events WHERE 1") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "SELECT" in err
    assert fresh.client.query("SELECT count() FROM gatewatch.events").result_rows[0][0] == len(events)


def test_console_token_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWATCH_HOME", str(tmp_path))
    assert main(["console-token", "create", "--tenants", "a,b"]) == 0
    secret = capsys.readouterr().out.strip()
    rec = TokenStore(tmp_path / "console-tokens.yaml").authenticate(secret)
    assert rec is not None and rec.tenants == ("a", "b") and not rec.is_admin
    assert secret not in (tmp_path / "console-tokens.yaml").read_text()
    assert (tmp_path / "console-tokens.yaml").stat().st_mode & 0o777 == 0o600
    assert main(["console-token", "create", "--tenants", "bad name"]) == 2


def test_cli_without_worker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--console", "http://127.0.0.1:9", "--token", "x", "SELECT 1"]) == 2
    assert "is `gatewatch worker` running?" in capsys.readouterr().err


def test_embedded_default_admin_token(tmp_path: Path) -> None:
    from consumers.console import ensure_admin_token

    assert ensure_admin_token(tmp_path) is True
    token_file = tmp_path / "console-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    rec = TokenStore(tmp_path / "console-tokens.yaml").authenticate(token_file.read_text().strip())
    assert rec is not None and rec.is_admin
    assert ensure_admin_token(tmp_path) is False  # kept across restarts
