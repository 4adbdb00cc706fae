"""The evaluator end to end on chdb with a real webhook receiver: fire once, resolve, cooldown, Slack shape,
webhook down, alerts table, restart without re-notifying, and the worker's wiring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.alerts import AlertEvaluator, WebhookNotifier, build_evaluator, parse_rules
from consumers.alerts.metrics import AlertMetrics
from consumers.config import AlertsConfig
from consumers.warehouse import Warehouse
from schemas.config import ConfigError
from tests.alerts.conftest import NOW, Receiver, closed_port_url, seed_events
from tests.consumers.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def make_evaluator(wh: Warehouse, metrics: AlertMetrics, url: str, *, kind: str = "json", clock: Clock,
                   interval_s: float = 30.0, **rule: Any) -> AlertEvaluator:
    rules = parse_rules({
        "webhooks": {"hook": {"url": url, "kind": kind, "headers": {"X-Token": "t"}, "timeout_s": 2}},
        "rules": [{"id": "errors", "metric": "error_rate", "threshold": 0.2, "window": "5m", "cooldown": "10m",
                   "severity": "critical", "labels": {"team": "llm"}, "notify": ["hook"],
                   "summary": "error rate {value} for {tenant}", **rule}]})
    notifier = WebhookNotifier(rules.webhooks, metrics, attempts=2, backoff_s=0.01)
    return AlertEvaluator(wh, rules, notifier, interval_s, clock=clock)


@contextlib.asynccontextmanager
async def stopping(ev: AlertEvaluator) -> AsyncIterator[AlertEvaluator]:
    """Drive ``evaluate_once`` by hand (no background loop), restore like ``start()``, stop at the end."""
    await ev.restore()
    try:
        yield ev
    finally:
        await ev.stop()


def failing(ts: datetime, n: int, tenant: str = "acme") -> list[dict[str, Any]]:
    return [{"ts": ts, "tenant": tenant, "outcome": "failed", "status": 502} for _ in range(n)]


def healthy(ts: datetime, n: int, tenant: str = "acme") -> list[dict[str, Any]]:
    return [{"ts": ts, "tenant": tenant} for _ in range(n)]


def value(metrics: AlertMetrics, name: str, **labels: str) -> float:
    for m in (metrics.evaluations, metrics.notifications, metrics.firing, metrics.transitions):
        for fam in m.collect():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == x for k, x in labels.items()):
                    return s.value
    return 0.0


def alerts(wh: Warehouse) -> list[dict[str, Any]]:
    return list(wh.client.query("SELECT * FROM gatewatch.alerts FINAL ORDER BY started_at").named_results())


async def test_fires_once_resolves_and_cooldown(warehouse: Warehouse, metrics: AlertMetrics,
                                                receiver: Receiver) -> None:
    clock = Clock()
    ev = make_evaluator(warehouse, metrics, receiver.url, clock=clock)
    seed_events(warehouse, failing(NOW - timedelta(minutes=1), 5) + healthy(NOW - timedelta(minutes=1), 5)
                + healthy(NOW - timedelta(minutes=1), 10, tenant="globex"))
    async with stopping(ev):
        first = await ev.evaluate_once()
        assert [(t.state, t.group_key) for t in first] == [("firing", "tenant=acme")]
        clock.now += timedelta(minutes=1)
        assert await ev.evaluate_once() == []  # still breached: deduplicated
        assert len(receiver.requests) == 1
        body = receiver.requests[0]
        assert body["status"] == "firing" and body["rule"] == "errors" and body["group"] == {"tenant": "acme"}
        assert body["value"] == pytest.approx(0.5) and body["threshold"] == 0.2 and body["severity"] == "critical"
        assert body["labels"] == {"team": "llm"} and body["summary"] == "error rate 0.5 for acme"
        assert body["resolved_at"] is None and body["started_at"].startswith("2026-03-14T15:39:26")
        assert receiver.headers[0]["X-Token"] == "t"
        assert value(metrics, "gatewatch_alerts_firing", rule="errors") == 1

        # healthy traffic dilutes the error rate below the threshold -> resolved
        seed_events(warehouse, healthy(clock.now - timedelta(seconds=30), 40))
        clock.now += timedelta(minutes=1)
        assert [t.state for t in await ev.evaluate_once()] == ["resolved"]
        assert receiver.requests[-1]["status"] == "resolved" and receiver.requests[-1]["resolved_at"]

        # errors again inside the cooldown: suppressed
        seed_events(warehouse, failing(clock.now - timedelta(seconds=10), 60))
        clock.now += timedelta(minutes=1)
        assert await ev.evaluate_once() == []
        assert len(receiver.requests) == 2

        # the window moves past every event: nothing to measure, nothing fires
        clock.now += timedelta(minutes=20)
        assert await ev.evaluate_once() == []
        # after the cooldown, fresh errors fire a new alert
        seed_events(warehouse, failing(clock.now - timedelta(seconds=10), 3))
        clock.now += timedelta(minutes=1)
        assert [t.state for t in await ev.evaluate_once()] == ["firing"]
    assert len(receiver.requests) == 3
    rows = alerts(warehouse)
    assert [(r["state"], r["group_key"], r["severity"]) for r in rows] == [
        ("resolved", "tenant=acme", "critical"), ("firing", "tenant=acme", "critical")]
    assert rows[0]["resolved_at"] is not None and rows[0]["notified_at"] is not None
    assert rows[0]["labels"] == {"team": "llm"} and rows[0]["group_labels"] == {"tenant": "acme"}
    assert rows[0]["threshold"] == 0.2 and rows[0]["summary"].startswith("[resolved] error rate")
    assert rows[0]["alert_id"] != rows[1]["alert_id"]
    assert value(metrics, "gatewatch_alerts_notifications_total", webhook="hook", status="sent") == 3
    assert value(metrics, "gatewatch_alerts_transitions_total", rule="errors", state="firing") == 2

    # a restarted evaluator reads the firing alert back: no second notification while it stays breached
    ev2 = make_evaluator(warehouse, metrics, receiver.url, clock=clock)
    async with stopping(ev2):
        assert await ev2.evaluate_once() == []
        clock.now += timedelta(minutes=10)
        assert [t.state for t in await ev2.evaluate_once()] == ["resolved"]
    assert [r["state"] for r in alerts(warehouse)] == ["resolved", "resolved"]


async def test_for_and_slack_payload(warehouse: Warehouse, metrics: AlertMetrics, receiver: Receiver) -> None:
    clock = Clock()
    ev = make_evaluator(warehouse, metrics, receiver.url, kind="slack", clock=clock, **{"for": 1})
    seed_events(warehouse, failing(NOW - timedelta(minutes=1), 3))
    async with stopping(ev):
        assert await ev.evaluate_once() == []  # pending
        assert [t.state for t in await ev.evaluate_once()] == ["firing"]
    body = receiver.requests[0]
    assert set(body) == {"text", "blocks"}
    assert "[FIRING]" in body["text"] and "error rate 1 for acme" in body["text"]
    assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][1]["fields"]}
    assert fields["*Rule*"] == "errors" and fields["*Group*"] == "tenant=acme" and fields["*Threshold*"] == "> 0.2"


async def test_webhook_down_keeps_evaluating(warehouse: Warehouse, metrics: AlertMetrics,
                                             receiver: Receiver) -> None:
    clock = Clock()
    ev = make_evaluator(warehouse, metrics, closed_port_url(), clock=clock, interval_s=0.05)
    seed_events(warehouse, failing(NOW - timedelta(minutes=1), 3, "acme") + failing(NOW, 3, "globex"))
    await ev.start()
    await ev.start()  # idempotent
    try:
        await wait_until(lambda: value(metrics, "gatewatch_alerts_evaluations_total", rule="errors",
                                       result="ok") >= 3, timeout=20)
    finally:
        await ev.stop()
        await ev.stop()  # idempotent
    assert value(metrics, "gatewatch_alerts_notifications_total", webhook="hook", status="failed") == 2
    rows = alerts(warehouse)
    assert [r["state"] for r in rows] == ["firing", "firing"] and all(r["notified_at"] is None for r in rows)
    # a receiver answering 500 is retried, then counted as failed
    receiver.status = 500
    clock.now += timedelta(hours=1)
    ev2 = make_evaluator(warehouse, metrics, receiver.url, clock=clock)
    async with stopping(ev2):
        assert {t.state for t in await ev2.evaluate_once()} == {"resolved"}
    assert len(receiver.requests) == 4  # 2 alerts x 2 attempts
    assert value(metrics, "gatewatch_alerts_notifications_total", webhook="hook", status="failed") == 4


async def test_bad_custom_sql_is_counted_not_fatal(warehouse: Warehouse, metrics: AlertMetrics,
                                                   receiver: Receiver) -> None:
    ev = make_evaluator(warehouse, metrics, receiver.url, clock=Clock(), metric="custom_sql",
                        sql="SELECT tenant, count() FROM gatewatch.no_such_table GROUP BY tenant")
    async with stopping(ev):
        assert await ev.evaluate_once() == []
    assert value(metrics, "gatewatch_alerts_evaluations_total", rule="errors", result="error") == 1
    not_a_number = make_evaluator(warehouse, metrics, receiver.url, clock=Clock(), metric="custom_sql",
                                  sql="SELECT 'acme' AS tenant, 'high' AS value")
    async with stopping(not_a_number):
        assert await not_a_number.evaluate_once() == []
    assert value(metrics, "gatewatch_alerts_evaluations_total", rule="errors", result="error") == 2


async def test_worker_wiring(warehouse: Warehouse, tmp_path: Path, receiver: Receiver) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    assert build_evaluator(AlertsConfig(), tmp_path, warehouse, registry) is None  # no rules file: off
    with pytest.raises(ConfigError, match="does not exist"):
        build_evaluator(AlertsConfig(rules_file=tmp_path / "missing.yaml"), tmp_path, warehouse, registry)
    (tmp_path / "alerts.yaml").write_text("rules:\n  - {id: x, metric: nope, threshold: 1}\n  - {id: y}\n")
    with pytest.raises(ConfigError) as info:
        build_evaluator(AlertsConfig(), tmp_path, warehouse, registry)
    assert len(info.value.errors) >= 3  # metric, y.metric, y.threshold
    (tmp_path / "alerts.yaml").write_text(
        f"interval_s: 1\nwebhooks: {{hook: {{url: '{receiver.url}'}}}}\n"
        "rules:\n  - {id: x, metric: error_rate, threshold: 0.5, notify: [hook]}\n")
    ev = build_evaluator(AlertsConfig(interval_s=99), tmp_path, warehouse, registry)
    assert ev is not None and ev.interval_s == 1 and [r.id for r in ev.rules] == ["x"]
    assert build_evaluator(AlertsConfig(enabled=False), tmp_path, warehouse, registry) is None
    await asyncio.wait_for(ev.stop(), 5)  # stop before start is safe


async def test_removed_rule_alerts_resolve_on_start(warehouse: Warehouse, metrics: AlertMetrics,
                                                    receiver: Receiver) -> None:
    clock = Clock()
    seed_events(warehouse, failing(NOW - timedelta(minutes=1), 3))
    async with stopping(make_evaluator(warehouse, metrics, receiver.url, clock=clock)) as ev:
        assert [t.state for t in await ev.evaluate_once()] == ["firing"]
    renamed = make_evaluator(warehouse, metrics, receiver.url, clock=clock, id="errors-v2")
    async with stopping(renamed):
        assert [t.rule.id for t in await renamed.evaluate_once()] == ["errors-v2"]
    rows = {r["rule_id"]: r for r in alerts(warehouse)}
    assert rows["errors"]["state"] == "resolved" and rows["errors"]["summary"].startswith("[resolved: rule removed]")
    assert rows["errors-v2"]["state"] == "firing"
    assert len(receiver.requests) == 2  # the removed rule's alert is closed silently


def test_tracker_prunes_inactive_groups() -> None:
    from consumers.alerts.state import AlertTracker

    rule = parse_rules({"rules": [{"id": "e", "metric": "error_rate", "threshold": 0.5, "cooldown": "10m"}]}).rules[0]
    tracker = AlertTracker()
    for i in range(50):
        tracker.observe(rule, (("tenant", f"t{i}"),), 0.1, NOW, NOW)
    tracker.observe(rule, (("tenant", "hot"),), 0.9, NOW, NOW)
    tracker.observe(rule, (("tenant", "hot"),), 0.1, NOW, NOW)  # resolved: kept for its cooldown
    tracker.prune(rule, NOW)
    assert len(tracker._states) == 1
    tracker.prune(rule, NOW + timedelta(minutes=10))
    assert tracker._states == {}
