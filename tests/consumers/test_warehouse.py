"""Migrations, table shapes, retention and rollups on real chdb; sink error mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.archiver import event_to_row
from consumers.contracts import PermanentError, TransientError
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.warehouse import (
    Warehouse,
    apply_migrations,
    events_retention_days,
    load_migrations,
    set_events_retention,
    split_statements,
    validate_dsn,
)
from tests.consumers.conftest import count, make_event

SCORES_COLUMNS = [
    ("event_id", "String"), ("ts", "DateTime64(3, 'UTC')"), ("tenant", "LowCardinality(String)"),
    ("request_model", "LowCardinality(String)"), ("scorer", "LowCardinality(String)"),
    ("metric", "LowCardinality(String)"), ("target", "LowCardinality(String)"), ("value", "Nullable(Float64)"),
    ("label", "String"), ("backend", "LowCardinality(String)"), ("model", "String"),
    ("model_version", "String"), ("scored_at", "DateTime64(3, 'UTC')"),
]
DRIFT_COLUMNS = [
    ("window_start", "DateTime64(3, 'UTC')"), ("window_end", "DateTime64(3, 'UTC')"),
    ("tenant", "LowCardinality(String)"), ("model", "LowCardinality(String)"), ("field", "LowCardinality(String)"),
    ("metric", "LowCardinality(String)"), ("value", "Float64"), ("baseline_size", "UInt32"),
    ("window_size", "UInt32"), ("drifted", "UInt8"), ("backend", "LowCardinality(String)"),
    ("embed_model", "String"), ("computed_at", "DateTime64(3, 'UTC')"),
]


def columns(wh: Warehouse, table: str) -> list[tuple[str, str]]:
    rows = wh.client.query("SELECT name, type FROM system.columns WHERE database = 'gatewatch' AND table = "
                           "{t:String} ORDER BY position", parameters={"t": table}).result_rows
    return [(str(n), str(t)) for n, t in rows]


def test_migrations_idempotent(warehouse: Warehouse) -> None:
    names = [m.name for m in load_migrations()]
    assert apply_migrations(warehouse.client) == []  # the fixture applied them already
    assert count(warehouse, "SELECT count() FROM gatewatch.schema_migrations FINAL") == len(names)
    tables = {r[0] for r in warehouse.client.query("SHOW TABLES FROM gatewatch").result_rows}
    assert {"events", "scores", "drift", "events_1m", "events_1m_mv", "scores_1m", "scores_1m_mv"} <= tables
    assert columns(warehouse, "scores") == SCORES_COLUMNS
    assert columns(warehouse, "drift") == DRIFT_COLUMNS
    warehouse.client.command("DELETE FROM gatewatch.schema_migrations WHERE version = 5")  # re-run one
    assert apply_migrations(warehouse.client) == ["0005_scores_1m"]


def test_retention(warehouse: Warehouse) -> None:
    assert events_retention_days(warehouse.client) == 365
    assert set_events_retention(warehouse.client, 30) is True
    assert events_retention_days(warehouse.client) == 30
    assert set_events_retention(warehouse.client, 30) is False


def test_rollups_and_sink_errors(warehouse: Warehouse) -> None:
    import asyncio

    async def go() -> None:
        sink = ClickHouseSink(warehouse.new_client)
        await sink.start()
        events = [make_event(i, tenant="acme") for i in range(10)]
        events.append(make_event(10, tenant="acme", outcome="failed", status=502, ttft_ms=None))
        await sink.write({"events": [event_to_row(e) for e in events]})
        now = datetime.now(UTC)
        await sink.write({"scores": [
            {"event_id": e.event_id, "ts": e.ts_end, "tenant": "acme", "request_model": "m", "scorer": "toxicity",
             "metric": "toxicity", "target": "response", "value": None if i == 0 else 0.5, "label": "",
             "backend": "cpu", "model": "x", "model_version": "1", "scored_at": now}
            for i, e in enumerate(events)]})
        bad = event_to_row(make_event(99))
        bad["status"] = -1  # out of range for UInt16
        with pytest.raises(PermanentError):
            await sink.write({"events": [bad]})
        with pytest.raises(TransientError):  # a missing table stalls instead of dead-lettering
            await sink.write({"nope": [{"a": 1}]})

    asyncio.run(go())
    q = warehouse.client.query(
        "SELECT sum(requests), sum(errors), sum(input_tokens), quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms)[1]"
        " FROM gatewatch.events_1m WHERE tenant = 'acme'").result_rows[0]
    assert q[0] == 11 and q[1] == 1 and q[2] == 11 * 12 and 1000 <= q[3] <= 1010
    s = warehouse.client.query("SELECT avgMerge(value_avg), sum(scored), sum(not_applicable) "
                               "FROM gatewatch.scores_1m").result_rows[0]
    assert s == (0.5, 11, 1)


def test_dsn_and_statement_splitting() -> None:
    assert validate_dsn("chdb://memory") and validate_dsn("chdb:///var/lib/gw")
    assert validate_dsn("https://u:p@ch.example:8443/gatewatch")
    for bad in ("chdb://relative/dir", "postgres://x", "ftp://h/"):
        with pytest.raises(ValueError):
            validate_dsn(bad)
    sql = "-- a; comment\nCREATE TABLE a (x String -- not; here\n);\n\nCREATE VIEW b AS SELECT 1;\n"
    assert split_statements(sql) == ["CREATE TABLE a (x String -- not; here\n)", "CREATE VIEW b AS SELECT 1"]
