"""The alert evaluator: every ``interval_s`` it runs each rule's query (off the event loop), feeds the
values to the state machine, notifies the transitions and stores them in ``gatewatch.alerts``.

A rule whose query fails is counted (``gatewatch_alerts_evaluations{result="error"}``) and skipped until
the next tick; a webhook that is down is counted by the notifier; nothing stops the loop but ``stop()``.
On start the state of recent alerts is read back from ``gatewatch.alerts``, so a restart neither
re-notifies an alert already firing nor skips a cooldown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.alerts.metrics import AlertMetrics
from consumers.alerts.notifier import WebhookNotifier
from consumers.alerts.queries import DB, build_query
from consumers.alerts.rules import AlertRule, RulesFile
from consumers.alerts.state import AlertTracker, Transition
from consumers.warehouse import Warehouse

log = logging.getLogger(__name__)
Group = tuple[tuple[str, str], ...]
ALERT_COLUMNS = ("alert_id", "rule_id", "metric", "group_key", "group_labels", "state", "value", "op", "threshold",
                 "severity", "started_at", "resolved_at", "notified_at", "labels", "summary", "updated_at")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


class AlertEvaluator:
    def __init__(self, warehouse: Warehouse, rules: RulesFile, notifier: WebhookNotifier, interval_s: float = 30.0,
                 *, clock: Callable[[], datetime] = utcnow, query_timeout_s: float = 30.0) -> None:
        self._warehouse = warehouse
        self.rules: Sequence[AlertRule] = rules.rules
        self.notifier = notifier
        self.metrics: AlertMetrics = notifier.metrics
        self.interval_s = interval_s
        self.tracker = AlertTracker()
        self._clock = clock
        self._settings = {"max_execution_time": max(1, int(query_timeout_s))}
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._warehouse.new_client()  # own client: a server session takes one query at a time
        return self._client

    async def start(self) -> None:
        """Restore recent state, then evaluate every ``interval_s`` until ``stop()``. Idempotent."""
        if self._task is not None:
            return
        await self.notifier.start()
        self._stop.clear()
        await self.restore()
        self._task = asyncio.create_task(self._run(), name="alert-evaluator")
        log.info("alert evaluator started: %d rules every %ss", len(self.rules), self.interval_s)

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the evaluation in flight (up to ``timeout``), then close the notifier. Idempotent."""
        task, self._task = self._task, None
        self._stop.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("alert evaluator did not stop within %ss; cancelled", timeout)
            log.info("alert evaluator stopped")
        await self.notifier.stop()

    async def __aenter__(self) -> AlertEvaluator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def restore(self) -> None:
        """Read back the state of this file's rules from ``gatewatch.alerts`` (``start()`` does it)."""
        try:
            await asyncio.to_thread(self._restore)
        except Exception:  # a lost history only risks one repeated notification
            log.warning("alerts: could not read back the alert state; starting empty", exc_info=True)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.evaluate_once()
            except Exception:  # the loop outlives any one bad tick (each is logged)
                log.exception("alert evaluation failed; retrying next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def evaluate_once(self) -> list[Transition]:
        """Evaluate every rule once; notify and store the transitions; return them."""
        now, wall = self._clock(), utcnow()
        transitions: list[Transition] = []
        for rule in self.rules:
            values = await self._evaluate_rule(rule, now)
            if values is None:
                continue
            pending = [g for g in self.tracker.groups(rule.id) if g not in values]
            for group in [*values, *pending]:
                t = self.tracker.observe(rule, group, values.get(group), now, wall)
                if t is not None:
                    transitions.append(t)
                    self.metrics.transitions.labels(rule.id, t.state).inc()
            self.tracker.prune(rule, now)
        for rule_id, firing in self.tracker.firing().items():
            self.metrics.firing.labels(rule_id).set(firing)
        suppressed, self.tracker.suppressed = self.tracker.suppressed, 0
        self.metrics.suppressed.inc(suppressed)
        if transitions:
            delivered = await asyncio.gather(*(self.notifier.send(t, t.rule.notify) for t in transitions))
            notified_at = utcnow()
            await self._store(transitions, [notified_at if ok else None for ok in delivered])
        return transitions

    async def _evaluate_rule(self, rule: AlertRule, now: datetime) -> dict[Group, float | None] | None:
        sql, params = build_query(rule, now)
        try:
            result = await asyncio.to_thread(self.client.query, sql, parameters=params, settings=self._settings)
        except Exception as exc:  # noqa: BLE001 -- one bad rule (or an outage) is counted
            self.metrics.evaluations.labels(rule.id, "error").inc()
            log.warning("alert rule %s: query failed: %s: %s", rule.id, type(exc).__name__, str(exc)[:300])
            return None
        try:
            values = group_values(rule, list(result.column_names), result.result_rows)
        except (ValueError, TypeError, IndexError) as exc:  # a custom_sql value that is not a number
            self.metrics.evaluations.labels(rule.id, "error").inc()
            log.warning("alert rule %s: bad result: %s: %s", rule.id, type(exc).__name__, exc)
            return None
        self.metrics.evaluations.labels(rule.id, "ok").inc()
        return values

    async def _store(self, transitions: Sequence[Transition], notified: Sequence[datetime | None]) -> None:
        rows = [alert_row(t, n) for t, n in zip(transitions, notified, strict=True)]
        try:
            await asyncio.to_thread(self.client.insert, f"{DB}.alerts", rows, column_names=list(ALERT_COLUMNS))
        except Exception as exc:  # noqa: BLE001 -- notifications went out; the history row is lost and counted
            self.metrics.store_failures.inc()
            log.warning("alerts: could not store %d transitions: %s: %s", len(rows), type(exc).__name__, exc)

    def _restore(self) -> None:
        ids = [r.id for r in self.rules]
        self._resolve_orphans(ids)
        if not ids:
            return
        rows = self.client.query(
            f"SELECT rule_id, group_labels, alert_id, started_at, resolved_at, updated_at FROM {DB}.alerts FINAL "
            "WHERE rule_id IN {ids:Array(String)} ORDER BY updated_at", parameters={"ids": ids}).result_rows
        for rule_id, labels, alert_id, started, resolved, updated in rows:
            self.tracker.restore(rule_id, tuple(sorted(labels.items())), alert_id=alert_id,
                                 started_at=_aware(started), updated_at=_aware(updated),
                                 resolved_at=None if resolved is None else _aware(resolved))
        log.info("alerts: restored the state of %d alerts", len(rows))


    def _resolve_orphans(self, ids: list[str]) -> None:
        """Alerts still firing for rules no longer in the file are marked resolved (not notified)."""
        result = self.client.query(
            f"SELECT * FROM {DB}.alerts FINAL WHERE state = 'firing' AND rule_id NOT IN {{ids:Array(String)}}",
            parameters={"ids": ids or [""]})
        now = utcnow()
        rows = []
        for r in result.named_results():
            updated = max(now, _aware(r["updated_at"]) + timedelta(milliseconds=1))
            rows.append({**r, "state": "resolved", "resolved_at": now, "updated_at": updated,
                         "summary": f"[resolved: rule removed] {r['summary']}"})
        if rows:
            self.client.insert(f"{DB}.alerts", [[row[c] for c in ALERT_COLUMNS] for row in rows],
                               column_names=list(ALERT_COLUMNS))
            log.info("alerts: resolved %d alerts of rules no longer configured", len(rows))


def group_values(rule: AlertRule, columns: list[str], rows: Sequence[Sequence[Any]]) -> dict[Group, float | None]:
    """``(group columns..., value)`` rows -> {group: value}; groups are sorted (column, value) pairs.
    budget_consumption divides the amount used by the tenant's budget (tenants without one are skipped)."""
    out: dict[Group, float | None] = {}
    for row in rows:
        group: Group = tuple(sorted((str(c), str(v)) for c, v in zip(columns[:-1], row[:-1], strict=True)))
        raw = row[-1]
        value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else float(raw)
        if rule.budget is not None and value is not None:
            budget = rule.budget.for_tenant(dict(group).get("tenant", ""))
            if budget is None:
                continue
            value /= budget
        out[group] = value
    return out


def alert_row(t: Transition, notified_at: datetime | None) -> list[Any]:
    return [t.alert_id, t.rule.id, t.rule.metric, t.group_key, dict(t.group), t.state, t.value, t.rule.op,
            t.rule.threshold, t.rule.severity, t.started_at, t.resolved_at, notified_at, dict(t.rule.labels),
            t.summary, t.updated_at]
