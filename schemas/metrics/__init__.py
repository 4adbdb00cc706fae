"""The metrics catalogue: every metric the dashboards, the console and the alerts compute, defined once.

- ``catalogue.py``: the sources (tables) and the metrics, with the formula decisions
- ``panels.py``:    the aggregate panels the Grafana dashboards and the console share
- ``sql.py``:       a ``Query`` to SQL with neutral placeholders
- ``dialects.py``:  the placeholders rendered for Grafana, the console and the alert evaluator

Importable on its own (no gatewatch/, gateway/ or consumers/ imports), so the Grafana builder runs from a
checkout. tests/dashboards/test_metric_agreement.py holds the three renderings to the same numbers.
"""

from schemas.metrics.catalogue import METRICS, SOURCES
from schemas.metrics.dialects import Alerts, Console, Dialect, Grafana
from schemas.metrics.model import Col, Metric, Query, Source, col, m
from schemas.metrics.panels import PANELS
from schemas.metrics.sql import build, defined_on, expression

__all__ = ["METRICS", "PANELS", "SOURCES", "Alerts", "Col", "Console", "Dialect", "Grafana", "Metric", "Query",
           "Source", "build", "col", "defined_on", "expression", "m"]
