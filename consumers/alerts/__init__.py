"""Alerts: YAML rules over warehouse metrics, evaluated by the worker, notified to webhooks, stored in
``gatewatch.alerts``. See docs/alerts.md."""

from consumers.alerts.evaluator import AlertEvaluator
from consumers.alerts.metrics import AlertMetrics, alert_metrics
from consumers.alerts.notifier import WebhookNotifier, json_payload, slack_payload
from consumers.alerts.rules import AlertRule, RulesError, RulesFile, WebhookConfig, load_rules, parse_rules
from consumers.alerts.runtime import build_evaluator, start_alerts
from consumers.alerts.state import AlertTracker, Transition

__all__ = ["AlertEvaluator", "AlertMetrics", "AlertRule", "AlertTracker", "RulesError", "RulesFile", "Transition",
           "WebhookConfig", "WebhookNotifier", "alert_metrics", "build_evaluator", "json_payload", "load_rules",
           "parse_rules", "slack_payload", "start_alerts"]
