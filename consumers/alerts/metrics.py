"""Prometheus metrics of the alert evaluator (``gatewatch_alerts_*``), one set per registry."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "gatewatch_alerts"
        self.evaluations = Counter(f"{ns}_evaluations", "Rule evaluations (result ok | error)", ["rule", "result"],
                                   registry=registry)
        self.firing = Gauge(f"{ns}_firing", "Alerts firing now (groups)", ["rule"], registry=registry)
        self.transitions = Counter(f"{ns}_transitions", "Alerts that fired or resolved", ["rule", "state"],
                                   registry=registry)
        self.suppressed = Counter(f"{ns}_suppressed", "Breaches not fired because of the rule's cooldown",
                                  registry=registry)
        self.notifications = Counter(f"{ns}_notifications", "Webhook notifications (status sent | failed)",
                                     ["webhook", "status"], registry=registry)
        self.store_failures = Counter(f"{ns}_store_failures", "Failed writes to gatewatch.alerts", registry=registry)


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, AlertMetrics] = weakref.WeakKeyDictionary()


def alert_metrics(registry: CollectorRegistry) -> AlertMetrics:
    """The metrics on ``registry`` (created once: Prometheus refuses duplicate names)."""
    if registry not in _by_registry:
        _by_registry[registry] = AlertMetrics(registry)
    return _by_registry[registry]
