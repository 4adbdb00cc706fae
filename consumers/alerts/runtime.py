"""Wiring for the worker: build and start the evaluator when there are rules, else do nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from consumers.alerts.evaluator import AlertEvaluator
from consumers.alerts.metrics import alert_metrics
from consumers.alerts.notifier import WebhookNotifier
from consumers.alerts.rules import RulesError, load_rules
from consumers.warehouse import Warehouse
from schemas.config import ConfigError

if TYPE_CHECKING:
    from consumers.config import AlertsConfig

log = logging.getLogger(__name__)


def build_evaluator(cfg: AlertsConfig, home: Path, warehouse: Warehouse,
                    registry: CollectorRegistry) -> AlertEvaluator | None:
    """The evaluator for ``worker.alerts``; None when alerts are off or the default rules file is absent.
    ConfigError (every problem listed) when the rules file is invalid or a configured one is missing."""
    path = cfg.rules_path(home)
    if not cfg.enabled:
        return None
    if not path.exists():
        if cfg.rules_file is not None:
            raise ConfigError("worker", [f"worker.alerts.rules_file: {path} does not exist"])
        log.info("alerts: no rules file at %s; evaluator not started", path)
        return None
    try:
        rules = load_rules(path)
    except RulesError as exc:
        raise ConfigError(exc.source, exc.errors) from None
    metrics = alert_metrics(registry)
    notifier = WebhookNotifier(rules.webhooks, metrics, attempts=cfg.notify_attempts, backoff_s=cfg.notify_backoff_s)
    return AlertEvaluator(warehouse, rules, notifier, rules.interval_s or cfg.interval_s,
                          query_timeout_s=cfg.query_timeout_s)


async def start_alerts(cfg: AlertsConfig, home: Path, warehouse: Warehouse,
                       registry: CollectorRegistry) -> AlertEvaluator | None:
    evaluator = build_evaluator(cfg, home, warehouse, registry)
    if evaluator is not None:
        await evaluator.start()
    return evaluator
