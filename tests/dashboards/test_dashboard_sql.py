"""Every Grafana panel query runs against chdb with the real migrations and seeded rows.

The plugin's macros and the dashboard variables are expanded the way grafana-clickhouse-datasource
(v4) and Grafana expand them; each query must run, return rows, and return every column the panel's
field config, options and data links name (time series: a ``time`` column first).
chdb: one data directory for the whole module, opened once in the main thread, never forked.
"""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest
import yaml

from consumers.archiver import event_to_row
from consumers.warehouse import Warehouse, apply_migrations
from schemas.events import Event

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "dashboards" / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(hours=6), NOW + timedelta(minutes=1)
INTERVAL_S = 60
TENANTS = ("acme", "globex", "initech")
MODELS = ("gpt-4o-mini", "llama-3.1-8b")
OPTIONAL_TABLES = {"alerts"}  # owned by another component; its panels run when its migration is present


def _event(i: int) -> Event:
    start = NOW - timedelta(minutes=i % 300, seconds=i % 50)
    outcome = ("completed", "completed", "completed", "failed", "denied")[i % 5]
    failed, denied = outcome == "failed", outcome == "denied"
    return Event.model_validate(dict(
        event_id=f"ev-{uuid.uuid4()}", request_id=f"req-{i}", gateway_instance=f"gw-{i % 2}", sequence=i,
        ts_start=start, ts_first_token=start + timedelta(milliseconds=90 + i), ts_end=start + timedelta(seconds=1),
        tenant=TENANTS[i % 3], key_id=f"key-{i % 4}", end_user=f"user-{i % 7}", metadata={"team": "search"},
        endpoint="chat.completions", operation="chat", request_model=MODELS[i % 2],
        response_model="llama-3.1-8b", deployment=None if denied else ("vllm-a", "vllm-b")[i % 2],
        provider="openai", response_id=f"resp-{i}", stream=i % 2 == 0, attempts=1,
        status=403 if denied else 502 if failed else 200, outcome=outcome,
        error_type="policy_denied" if denied else ("upstream_timeout", "budget_exceeded")[i % 2] if failed else None,
        latency_ms=200.0 + 13 * i, ttft_ms=90.0 + i if i % 2 == 0 else None,
        usage={"input_tokens": 12 + i, "output_tokens": 30 + i, "total_tokens": 42 + 2 * i},
        cost_usd=0.0001 * (i + 1), capture="full",
        request={"messages": [{"role": "user", "content": f"q{i}"}], "context": [], "params": {}},
        response={"text": f"answer {i}", "finish_reasons": ["stop"]},
        policy={"decision": "deny" if denied else ("allow", "flag")[i % 2],
                "rule_ids": [("pii-email", "injection")[i % 2]] if denied or i % 2 else [],
                "reason": None, "policy_version": "v3"},
        pii_counts={"EMAIL_ADDRESS": 1 + i % 2, "PHONE_NUMBER": 1} if i % 3 == 0 else {},
    ))


def _insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    client.insert(f"gatewatch.{table}", [[r[c] for c in columns] for r in rows], column_names=columns)


def _score(ev: Event, scorer: str, metric: str, target: str, value: float | None, label: str) -> dict[str, Any]:
    return {"event_id": ev.event_id, "ts": ev.ts_end, "tenant": ev.tenant, "request_model": ev.request_model or "",
            "scorer": scorer, "metric": metric, "target": target, "value": value, "label": label,
            "backend": "test", "model": "test", "model_version": "1"}


def _seed(client: Any) -> None:
    events = [_event(i) for i in range(120)]
    _insert(client, "events", [event_to_row(e) for e in events])
    scores: list[dict[str, Any]] = []
    for i, ev in enumerate(events):
        for target in ("prompt", "response"):
            tox = (i * 37 % 100) / 100
            scores.append(_score(ev, "toxicity", "toxicity", target, tox, "toxic" if tox >= 0.5 else "ok"))
            scores.append(_score(ev, "drift", "centroid_distance", target, 0.01 * (i % 9), "window"))
        if i % 6 == 0:
            scores.append(_score(ev, "factuality", "support", "response", None, "not_applicable"))
            continue
        sup, con = (i * 53 % 100) / 100, (i * 29 % 100) / 100
        scores.append(_score(ev, "factuality", "support", "response", sup, "supported" if sup >= .5 else "unsupported"))
        scores.append(_score(ev, "factuality", "contradiction", "response", con,
                             "contradicted" if con >= .5 else "ok"))
    _insert(client, "scores", scores)
    drift = []
    for w in range(12):
        start = NOW - timedelta(minutes=30 * (w + 1))
        for tenant in TENANTS:
            for field in ("prompt", "response"):
                drifted = int(w % 4 == 0)
                for metric, value in (("centroid_cosine", 0.02 + 0.01 * w), ("mmd2", 0.001 * w),
                                      ("mmd2_pvalue", 0.005 if drifted else 0.4)):
                    drift.append({"window_start": start, "window_end": start + timedelta(minutes=5), "tenant": tenant,
                                  "model": MODELS[w % 2], "field": field, "metric": metric, "value": value,
                                  "baseline_size": 500, "window_size": 200, "drifted": drifted, "backend": "test",
                                  "embed_model": "minilm"})
    _insert(client, "drift", drift)
    if _has_table(client, "alerts"):  # gatewatch.alerts comes with the alert evaluator (migration 0007)
        _insert(client, "alerts", [
            {"alert_id": f"al-{i}", "rule_id": ("error-rate", "toxicity")[i % 2], "metric": "error_rate",
             "group_key": f"tenant={TENANTS[i % 3]}", "group_labels": {"tenant": TENANTS[i % 3]},
             "state": ("firing", "resolved")[i % 2], "value": 0.2, "op": ">", "threshold": 0.1,
             "severity": "critical", "started_at": NOW - timedelta(minutes=10 * i),
             "resolved_at": None if i % 2 == 0 else NOW, "notified_at": None, "labels": {}, "summary": "s"}
            for i in range(6)])


def _has_table(client: Any, table: str) -> bool:
    return bool(client.query("SELECT count() FROM system.tables WHERE database = 'gatewatch' AND name = "
                             "{t:String}", parameters={"t": table}).result_rows[0][0])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with Warehouse(f"chdb://{tmp_path_factory.mktemp('dash') / 'warehouse'}") as wh:
        apply_migrations(wh.client)
        _seed(wh.client)
        yield wh.client


# ---- expansion ---------------------------------------------------------------------------------------

_MACROS = [
    (re.compile(r"\$__timeFilter_ms\(([^)]+)\)"), lambda m: f"{m[1]} >= fromUnixTimestamp64Milli("
     f"{int(FROM.timestamp() * 1000)}) AND {m[1]} <= fromUnixTimestamp64Milli({int(TO.timestamp() * 1000)})"),
    (re.compile(r"\$__timeFilter\(([^)]+)\)"), lambda m: f"{m[1]} >= toDateTime({int(FROM.timestamp())}) AND "
     f"{m[1]} <= toDateTime({int(TO.timestamp())})"),
    (re.compile(r"\$__dateFilter\(([^)]+)\)"), lambda m: f"{m[1]} >= toDate('{FROM:%Y-%m-%d}') AND "
     f"{m[1]} <= toDate('{TO:%Y-%m-%d}')"),
    (re.compile(r"\$__timeInterval_ms\(([^)]+)\)"),
     lambda m: f"toStartOfInterval(toDateTime64({m[1]}, 3), INTERVAL {INTERVAL_S * 1000} millisecond)"),
    (re.compile(r"\$__timeInterval\(([^)]+)\)"),
     lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {INTERVAL_S} second)"),
    (re.compile(r"\$__fromTime_ms\b"), lambda m: f"fromUnixTimestamp64Milli({int(FROM.timestamp() * 1000)})"),
    (re.compile(r"\$__toTime_ms\b"), lambda m: f"fromUnixTimestamp64Milli({int(TO.timestamp() * 1000)})"),
    (re.compile(r"\$__fromTime\b"), lambda m: f"toDateTime({int(FROM.timestamp())})"),
    (re.compile(r"\$__toTime\b"), lambda m: f"toDateTime({int(TO.timestamp())})"),
    (re.compile(r"\$__interval_s\b"), lambda m: str(INTERVAL_S)),
]
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand(sql: str, variables: dict[str, list[str] | str]) -> str:
    for pattern, repl in _MACROS:
        sql = pattern.sub(repl, sql)

    def var(m: re.Match[str]) -> str:
        name, fmt = (m[1], m[2]) if m[1] else (m[3], None)
        if name not in variables:
            raise AssertionError(f"undefined variable ${name} in {sql!r}")
        value = variables[name]
        values = value if isinstance(value, list) else [value]
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        if fmt is None and isinstance(value, list):  # Grafana's default multi-value format for SQL: quoted
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        assert fmt is None, f"format {fmt} not handled by the test"
        return ",".join(values)

    return _VAR.sub(var, sql)


def board_variables(client: Any, board: dict[str, Any]) -> dict[str, list[str] | str]:
    """Template variables as Grafana resolves them with their defaults ("All" -> every value)."""
    values: dict[str, list[str] | str] = {}
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            res = client.query(expand(v["query"], values))
            values[v["name"]] = [str(row[0]) for row in res.result_rows]
            assert values[v["name"]], f"variable {v['name']} has no values"
        else:
            values[v["name"]] = v["current"]["value"]
    return values


def _boards() -> list[tuple[str, dict[str, Any]]]:
    return [(p.stem, json.loads(p.read_text())) for p in BOARDS]


def _targets() -> list[Any]:
    out = []
    for name, board in _boards():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(pytest.param(name, panel, target, id=f"{name}:{panel['title']}"))
    return out


def expected_columns(panel: dict[str, Any]) -> set[str]:
    names = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
    opts = panel.get("options", {})
    if "xField" in opts:
        names.add(opts["xField"])
    text = json.dumps(panel)
    names |= set(re.findall(r"__data\.fields\.(\w+)", text))
    fields = opts.get("reduceOptions", {}).get("fields", "")
    if fields.startswith("/^") and fields.endswith("$/"):
        names.add(fields[2:-2])
    return names


def test_there_are_five_dashboards() -> None:
    assert {p.stem for p in BOARDS} == {"traffic", "usage", "governance", "quality", "drift"}


@pytest.mark.parametrize(("board_name", "panel", "target"), _targets())
def test_panel_query_runs_and_returns_its_columns(client: Any, board_name: str, panel: dict[str, Any],
                                                  target: dict[str, Any]) -> None:
    board = dict(_boards())[board_name]
    assert panel["datasource"] == target["datasource"] == {"type": "grafana-clickhouse-datasource",
                                                           "uid": "gatewatch-clickhouse"}
    for table in set(re.findall(r"gatewatch\.(\w+)", target["rawSql"])):
        if table in OPTIONAL_TABLES and not _has_table(client, table):
            pytest.skip(f"gatewatch.{table} is not in this tree's migrations")
    sql = expand(target["rawSql"], board_variables(client, board))
    assert "$" not in sql, sql
    result = client.query(sql)
    columns = list(result.column_names)
    assert result.result_rows, f"no rows (the seeded data should reach every panel): {sql}"
    missing = expected_columns(panel) - set(columns)
    assert not missing, f"{panel['title']}: columns {sorted(missing)} not returned (got {columns})"
    if target["format"] == 1:  # time series: the time column first, one value column at least
        assert columns[0] == "time", columns
        assert isinstance(result.result_rows[0][0], datetime)
        numeric = [c for c, t in zip(columns[1:], result.column_types[1:], strict=True)
                   if any(k in t.name for k in ("Int", "Float", "Decimal"))]
        assert numeric, f"{panel['title']}: no numeric column in {columns}"
        strings = [c for c, t in zip(columns[1:], result.column_types[1:], strict=True) if "String" in t.name]
        assert len(strings) <= 1, f"{panel['title']}: long format takes one series-name column, got {strings}"


def test_worst_examples_link_to_their_audit_entry(client: Any) -> None:
    """The data link, filled from a result row, is a valid GET /api/audit query that finds that event."""
    quality = dict(_boards())["quality"]
    (panel,) = [p for p in quality["panels"] if p["type"] == "table" and p["title"].startswith("Worst examples")]
    (link,) = [link for o in panel["fieldConfig"]["overrides"] for prop in o["properties"]
               if prop["id"] == "links" for link in prop["value"]]
    result = client.query(expand(panel["targets"][0]["rawSql"], board_variables(client, quality)))
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))
    url = re.sub(r"\$\{__data\.fields\.(\w+)(?::\w+)?\}", lambda m: quote(str(row[m[1]]), safe=""), link["url"])
    url = url.replace("${console_url}", "http://console.test")
    parts = urlsplit(url)
    assert parts.path == "/api/audit"
    query = parse_qsl(parts.query)
    audit = pytest.importorskip("consumers.audit.search")
    flt = audit.AuditFilter.from_query([(k, v) for k, v in query if k != "limit"])
    where, params = audit.where_clause(flt, None)  # the audit API's own query
    found = client.query(f"SELECT event_id FROM gatewatch.events FINAL WHERE {where}", parameters=params)
    assert [r[0] for r in found.result_rows] == [row["event_id"]]
    assert any(v["name"] == "console_url" for v in quality["templating"]["list"])


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    for name, board in _boards():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        assert board["schemaVersion"] >= 39
        for p in board["panels"]:
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, p["title"])


def test_json_is_generated_from_build_py() -> None:
    # imported, not run as a subprocess: never fork a process that has chdb open
    spec = importlib.util.spec_from_file_location("gatewatch_grafana_build", GRAFANA / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, text in build.render().items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, f"{name} is stale: run dashboards/grafana/build.py"


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource" and source["uid"] == "gatewatch-clickhouse"
    assert source["jsonData"]["defaultDatabase"] == "gatewatch"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gatewatch.yaml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/gatewatch"
