"""/api/audit on a seeded warehouse: auth, every filter, pagination, exports, tenant scoping, the query log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient

from consumers.warehouse import Warehouse
from schemas.events import Event
from tests.audit.conftest import (
    BASE_TS,
    Tokens,
    bearer,
    insert_events,
    insert_scores,
    open_warehouse,
    seed_events,
    serve,
)

pytestmark = pytest.mark.timeout(60)
EVENTS = seed_events()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    wh = open_warehouse(tmp_path_factory.mktemp("wh") / "warehouse")
    insert_events(wh, EVENTS)
    insert_scores(wh, EVENTS)
    try:
        yield wh
    finally:
        wh.close()


@pytest.fixture
async def api(seeded: Warehouse, tokens: Tokens) -> AsyncIterator[TestClient]:
    async for client in serve(seeded, tokens):
        yield client


async def _ids(api: TestClient, token: str, **params: object) -> set[str]:
    resp = await api.get("/api/audit", params={"limit": "1000", **{k: str(v) for k, v in params.items()}},
                         headers=bearer(token))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return {r["event_id"] for r in body["rows"]}


def _expect(pred) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.event_id for e in EVENTS if pred(e)}


async def test_auth_required_and_open_routes(api: TestClient, tokens: Tokens) -> None:
    assert (await api.get("/api/audit")).status == 401
    resp = await api.get("/api/audit", headers=bearer("gwc-wrong"))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    assert (await api.post("/api/query", json={"sql": "SELECT 1"})).status == 401
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/metrics")).status == 200


FILTERS: list[tuple[dict[str, object], object]] = [
    ({"tenant": "globex"}, lambda e: e.tenant == "globex"),
    ({"tenant": "acme,initech"}, lambda e: e.tenant in ("acme", "initech")),
    ({"key_id": "key-1"}, lambda e: e.key_id == "key-1"),
    ({"event_id": EVENTS[7].event_id}, lambda e: e.event_id == EVENTS[7].event_id),
    ({"request_id": EVENTS[4].request_id}, lambda e: e.request_id == EVENTS[4].request_id),
    ({"end_user": "user-3"}, lambda e: e.end_user == "user-3"),
    ({"model": "llama"}, lambda e: e.request_model == "llama"),
    ({"model": "m-small"}, lambda e: e.response_model == "m-small"),
    ({"since": (BASE_TS + timedelta(minutes=10)).isoformat(), "until": (BASE_TS + timedelta(minutes=20)).isoformat()},
     lambda e: BASE_TS + timedelta(minutes=10) <= e.ts_start < BASE_TS + timedelta(minutes=20)),
    ({"decision": "deny"}, lambda e: e.policy.decision == "deny"),
    ({"rule_id": "rule-1"}, lambda e: "rule-1" in e.policy.rule_ids),
    ({"pii_entity": "PHONE_NUMBER"}, lambda e: "PHONE_NUMBER" in e.pii_counts),
    ({"outcome": "failed"}, lambda e: e.outcome == "failed"),
    ({"scorer": "toxicity", "metric": "toxicity", "min_score": "0.5"}, lambda e: e in EVENTS[5:10]),
    ({"scorer": "toxicity", "metric": "toxicity", "max_score": "0.2"}, lambda e: e in EVENTS[0:3]),
    ({"tenant": "acme", "outcome": "completed", "decision": "allow"},
     lambda e: e.tenant == "acme" and e.outcome == "completed" and e.policy.decision == "allow"),
]


@pytest.mark.parametrize(("params", "pred"), FILTERS, ids=[",".join(p) for p, _ in FILTERS])
async def test_each_filter(api: TestClient, tokens: Tokens, params: dict[str, object], pred: object) -> None:
    expected = _expect(pred)
    assert expected, "the seed must cover every filter"
    assert await _ids(api, tokens.admin, **params) == expected


async def test_bad_filters_are_400(api: TestClient, tokens: Tokens) -> None:
    for params in ({"outcome": "nope"}, {"min_score": "1"}, {"bogus": "x"}, {"limit": "5000"}, {"format": "xml"},
                   {"cursor": "!!"}):
        resp = await api.get("/api/audit", params=params, headers=bearer(tokens.admin))
        assert resp.status == 400, params
        assert (await resp.json())["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pagination_covers_every_row_once(api: TestClient, tokens: Tokens, order: str) -> None:
    seen: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "7", "order": order, **({"cursor": cursor} if cursor else {})}
        body = await (await api.get("/api/audit", params=params, headers=bearer(tokens.admin))).json()
        seen += [(r["ts_start"], r["event_id"]) for r in body["rows"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 9 and len(seen) == len(set(seen)) == len(EVENTS)
    assert {i for _, i in seen} == {e.event_id for e in EVENTS}
    assert seen == sorted(seen, reverse=order == "desc")


async def test_cursor_keeps_its_order(api: TestClient, tokens: Tokens) -> None:
    body = await (await api.get("/api/audit", params={"limit": "3", "order": "desc"},
                                headers=bearer(tokens.admin))).json()
    for params in ({"cursor": body["next_cursor"]}, {"cursor": body["next_cursor"], "order": "asc"},
                   {"order": "newest"}):
        resp = await api.get("/api/audit", params={"limit": "3", **params}, headers=bearer(tokens.admin))
        assert resp.status == 400, params
        assert "order" in (await resp.json())["error"]["message"]


async def test_exports_parse_back(api: TestClient, tokens: Tokens) -> None:
    expected = _expect(lambda e: e.tenant == "acme")
    get = lambda fmt: api.get("/api/audit", params={"tenant": "acme", "format": fmt},  # noqa: E731
                              headers=bearer(tokens.admin))
    jsonl = await (await get("jsonl")).read()
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert {r["event_id"] for r in rows} == expected
    assert rows[0]["request_messages"][1]["role"] == "user" and rows[0]["ts_start"].endswith("Z")
    text = (await (await get("csv")).read()).decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert {r["event_id"] for r in table} == expected and json.loads(table[0]["policy_rule_ids"])
    parquet = pq.read_table(io.BytesIO(await (await get("parquet")).read()))
    assert set(parquet.column("event_id").to_pylist()) == expected
    assert str(parquet.schema.field("ts_start").type) == "timestamp[ms, tz=UTC]"
    resp = await api.get("/api/audit", params={"format": "csv", "limit": "5"}, headers=bearer(tokens.admin))
    assert resp.headers.get("X-Next-Cursor")


async def test_tenant_scope(api: TestClient, tokens: Tokens) -> None:
    assert await _ids(api, tokens.acme) == _expect(lambda e: e.tenant == "acme")
    assert await _ids(api, tokens.multi) == _expect(lambda e: e.tenant in ("acme", "globex"))
    for tenant in ("globex", "acme,globex"):
        resp = await api.get("/api/audit", params={"tenant": tenant}, headers=bearer(tokens.acme))
        assert resp.status == 403
    # no filter on tenant can widen the scope: other filters only narrow it
    assert await _ids(api, tokens.acme, key_id="key-1") == _expect(lambda e: e.tenant == "acme" and e.key_id == "key-1")
    for path, kw in (("/api/audit/verify", {}), ("/api/query", {"json": {"sql": "SELECT 1"}})):
        resp = await (api.post if "query" in path else api.get)(path, headers=bearer(tokens.acme), **kw)
        assert resp.status == 403, path


async def _log_count(api: TestClient, tokens: Tokens) -> int:
    resp = await api.post("/api/query", json={"sql": "SELECT count() AS n FROM gatewatch.audit_queries"},
                          headers=bearer(tokens.admin))
    return int((await resp.json())["rows"][0][0])


async def test_every_call_is_logged(api: TestClient, tokens: Tokens) -> None:
    before = await _log_count(api, tokens)  # this call is logged too (after it ran)
    await api.get("/api/audit", params={"tenant": "acme", "outcome": "failed"}, headers=bearer(tokens.acme))
    await api.get("/api/audit", params={"tenant": "globex"}, headers=bearer(tokens.acme))  # refused: logged
    await api.post("/api/query", json={"sql": "DROP TABLE gatewatch.events"}, headers=bearer(tokens.admin))
    assert await _log_count(api, tokens) == before + 4
    resp = await api.post("/api/query", headers=bearer(tokens.admin), json={
        "sql": "SELECT endpoint, filter, rows, status, scope FROM gatewatch.audit_queries ORDER BY ts DESC LIMIT 4"})
    last = (await resp.json())["rows"]
    assert [r[0] for r in last] == ["query", "query", "audit", "audit"]
    assert last[1][3] == 400 and "DROP" in json.loads(last[1][1])["sql"]
    assert last[2][3] == 403 and json.loads(last[2][1])["tenant"] == "globex"
    assert last[3][3] == 200 and last[3][2] == len(_expect(lambda e: e.tenant == "acme" and e.outcome == "failed"))
    assert last[3][4] == ["acme"]


async def test_an_access_that_cannot_be_recorded_is_not_answered(
    api: TestClient, tokens: Tokens, seeded: Warehouse
) -> None:
    """The warehouse refusing the query-log insert (here: its table gone) -> 503 audit_unavailable, no rows;
    once it takes writes again, the same call answers (found with the warehouse read-only under load)."""
    seeded.client.command("RENAME TABLE gatewatch.audit_queries TO gatewatch.audit_queries_away")
    try:
        resp = await api.get("/api/audit", params={"tenant": "acme"}, headers=bearer(tokens.acme))
        body = await resp.json()
        assert resp.status == 503, body
        assert body["error"]["code"] == "audit_unavailable" and "rows" not in body
    finally:
        seeded.client.command("RENAME TABLE gatewatch.audit_queries_away TO gatewatch.audit_queries")
    resp = await api.get("/api/audit", params={"tenant": "acme"}, headers=bearer(tokens.acme))
    assert resp.status == 200 and (await resp.json())["rows"]


async def test_query_is_read_only(api: TestClient, tokens: Tokens, seeded: Warehouse) -> None:
    resp = await api.post("/api/query", json={"sql": "SELECT tenant, count() AS n FROM gatewatch.events "
                                                     "GROUP BY tenant ORDER BY tenant"}, headers=bearer(tokens.admin))
    body = await resp.json()
    assert resp.status == 200 and body["columns"] == ["tenant", "n"] and body["rows"][0] == ["acme", 20]
    writes = ["INSERT INTO gatewatch.events (event_id) VALUES ('x')", "ALTER TABLE gatewatch.events DELETE WHERE 1",
              "DROP TABLE gatewatch.events", "SELECT 1; DROP TABLE gatewatch.events",
              "SELECT 1) UNION ALL SELECT * FROM file('/etc/hostname', 'LineAsString') --",
              "SELECT * FROM file('/etc/hostname', 'LineAsString')", "SELECT 1 SETTINGS readonly = 0",
              "CREATE TABLE gatewatch.x (a UInt8) ENGINE = Memory", "TRUNCATE TABLE gatewatch.events"]
    for sql in writes:
        resp = await api.post("/api/query", json={"sql": sql}, headers=bearer(tokens.admin))
        assert resp.status == 400, sql
    assert seeded.client.query("SELECT count() FROM gatewatch.events").result_rows[0][0] == len(EVENTS)
    seeded.client.command("SELECT 1")  # the shared session is not left read-only
    resp = await api.post("/api/query", json={"sql": "SELECT number FROM numbers(50)", "limit": 10},
                          headers=bearer(tokens.admin))
    body = await resp.json()
    assert len(body["rows"]) == 10 and body["truncated"] is True


def test_seed_is_distinct() -> None:
    assert len({e.event_id for e in EVENTS}) == len(EVENTS) and isinstance(EVENTS[0], Event)
