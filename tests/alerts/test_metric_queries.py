"""Every built-in metric's SQL runs on chdb and returns the expected value on seeded data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consumers.alerts.evaluator import group_values
from consumers.alerts.queries import build_query
from consumers.alerts.rules import parse_rules
from consumers.warehouse import Warehouse
from tests.alerts.conftest import NOW, seed_drift, seed_events, seed_scores

IN = NOW - timedelta(minutes=2)  # inside a 5m window
OLD = NOW - timedelta(minutes=20)  # outside it (but this month)
PII_DENY = {"decision": "deny", "rule_ids": ["pii.input.block.US_SSN"], "reason": "pii"}


def evaluate(wh: Warehouse, **rule: Any) -> dict[str, float | None]:
    parsed = parse_rules({"rules": [{"id": "r", "threshold": 0, **rule}]}).rules[0]
    sql, params = build_query(parsed, NOW)
    result = wh.client.query(sql, parameters=params)
    values = group_values(parsed, list(result.column_names), result.result_rows)
    return {",".join(f"{k}={v}" for k, v in g): v for g, v in values.items()}


def seed(wh: Warehouse) -> None:
    events = [{"ts": IN, "tenant": "acme", "latency_ms": float(i + 1), "cost_usd": 1.0} for i in range(100)]
    events += [{"ts": IN, "tenant": "acme", "outcome": "failed", "status": 502, "latency_ms": 5.0}
               for _ in range(25)]
    events += [{"ts": IN, "tenant": "acme", "outcome": "denied", "status": 400, "policy": PII_DENY,
                "latency_ms": 1.0, "request_model": "other"} for _ in range(5)]
    events += [{"ts": OLD, "tenant": "acme", "outcome": "failed", "status": 502, "cost_usd": 10.0} for _ in range(50)]
    events += [{"ts": IN, "tenant": "globex", "latency_ms": 50.0, "cost_usd": 0.5} for _ in range(10)]
    seed_events(wh, events)
    tox = [{"event_id": f"t{i}", "ts": IN, "tenant": "acme", "scorer": "toxicity", "metric": m,
            "value": 0.9 if i < 2 and m == "insult" else 0.1, "label": "toxic" if i < 2 and m == "insult" else "ok"}
           for i in range(8) for m in ("toxicity", "insult")]
    tox.append({"event_id": "t-na", "ts": IN, "tenant": "acme", "scorer": "toxicity", "metric": "toxicity",
                "value": None, "label": "not_applicable"})
    fact = [{"event_id": f"f{i}", "ts": IN, "tenant": "acme", "scorer": "factuality", "metric": "contradiction",
             "value": 0.8 if i < 3 else 0.1, "label": "contradicted" if i < 3 else "ok"} for i in range(10)]
    fact.append({"event_id": "f-old", "ts": OLD, "tenant": "acme", "scorer": "factuality", "metric": "contradiction",
                 "value": 0.9, "label": "contradicted"})
    seed_scores(wh, tox + fact)
    seed_drift(wh, [
        {"window_start": IN - timedelta(minutes=1), "window_end": IN, "tenant": "acme", "drifted": 1},
        {"window_start": IN - timedelta(minutes=1), "window_end": IN, "tenant": "globex", "drifted": 0},
        {"window_start": OLD - timedelta(minutes=1), "window_end": OLD, "tenant": "globex", "drifted": 1}])


def test_builtin_metrics_on_seeded_data(warehouse: Warehouse) -> None:
    seed(warehouse)
    wh = warehouse
    assert evaluate(wh, metric="error_rate") == {"tenant=acme": pytest.approx(25 / 130), "tenant=globex": 0.0}
    assert evaluate(wh, metric="error_rate", window="1h", filter={"tenant": "acme"}) == {
        "tenant=acme": pytest.approx(75 / 180)}
    assert evaluate(wh, metric="error_rate", group_by=[]) == {"": pytest.approx(25 / 140)}
    assert evaluate(wh, metric="error_rate", group_by=["tenant", "model"], filter={"model": "other"}) == {
        "model=other,tenant=acme": 0.0}
    p99 = evaluate(wh, metric="latency_p99_ms")
    assert 95 <= p99["tenant=acme"] <= 100 and p99["tenant=globex"] == 50.0
    assert evaluate(wh, metric="ttft_p99_ms", filter={"tenant": "globex"}) == {"tenant=globex": 120.5}
    assert evaluate(wh, metric="pii_block_rate") == {"tenant=acme": pytest.approx(5 / 130), "tenant=globex": 0.0}
    assert evaluate(wh, metric="toxicity_rate") == {"tenant=acme": pytest.approx(2 / 8)}
    assert evaluate(wh, metric="contradiction_rate") == {"tenant=acme": pytest.approx(3 / 10)}
    assert evaluate(wh, metric="drift_flag", group_by=["tenant", "model"]) == {
        "model=gpt-4o-mini,tenant=acme": 1.0, "model=gpt-4o-mini,tenant=globex": 0.0}
    budget = {"unit": "usd", "default": 100.0, "tenants": {"globex": 10.0}}
    assert evaluate(wh, metric="budget_consumption", budget=budget) == {
        "tenant=acme": pytest.approx((100 * 1.0 + 50 * 10.0 + 25 * 0.00042 + 5 * 0.00042) / 100),
        "tenant=globex": pytest.approx(0.5)}
    tokens = evaluate(wh, metric="budget_consumption", budget={"unit": "tokens", "tenants": {"globex": 1000}})
    assert list(tokens) == ["tenant=globex"]  # acme has no budget: not checked
    custom = evaluate(wh, metric="custom_sql", sql=(
        "SELECT tenant, count() AS value FROM gatewatch.events FINAL "
        "WHERE ts_start > {start:DateTime64(3, 'UTC')} AND ts_start <= {now:DateTime64(3, 'UTC')} GROUP BY tenant"))
    assert custom == {"tenant=acme": 130.0, "tenant=globex": 10.0}


def test_empty_window_gives_no_value(warehouse: Warehouse) -> None:
    for metric in ("error_rate", "latency_p99_ms", "ttft_p99_ms", "pii_block_rate", "toxicity_rate",
                   "contradiction_rate", "drift_flag"):
        assert evaluate(warehouse, metric=metric) == {}
        assert evaluate(warehouse, metric=metric, group_by=[]) == {"": None}
