"""The metrics catalogue on its own (no warehouse): every definition resolves, every renderer covers what the
queries use, the console's SQL carries values only as parameters, and unsafe aliases are refused."""

from __future__ import annotations

import re

import pytest

from schemas.metrics import METRICS, PANELS, SOURCES, Alerts, Console, Grafana, Query, defined_on, expression, m

UNITS = {"count", "ratio", "ms", "usd", "per_s", "per_min", "score"}
CONSOLE_PARAMS = {"start", "end", "step", "threshold", "field", "scope", "tenant", "model"}


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_resolves_on_its_sources(name: str) -> None:
    metric = METRICS[name]
    assert metric.description and metric.unit in UNITS
    assert defined_on(name), f"{name} is defined on no source"
    for source in defined_on(name):
        assert source in SOURCES
        sql = expression(name, source)
        assert not re.search(r"\{\w+\}", sql), sql  # every reference to another metric resolved


@pytest.mark.parametrize("panel", list(PANELS))
def test_renderings_leave_no_placeholder(panel: str) -> None:
    dialect = Console(scoped=True, tenant_filter=True, model_filter=True)
    console, grafana = dialect.sql(PANELS[panel]), Grafana().sql(PANELS[panel])
    assert "@" not in console and "$" not in console
    assert "@" not in grafana and not re.search(r"\{\w+:", grafana.replace("${tenant:", "").replace("${model:", ""))
    # the console binds values server-side: only these parameters, never a value in the text
    assert set(re.findall(r"\{(\w+):", console)) <= CONSOLE_PARAMS
    assert "tenant IN {scope:Array(String)}" in console and "tenant IN {tenant:Array(String)}" in console


def test_an_admin_without_filters_gets_no_tenant_condition() -> None:
    sql = Console().sql(PANELS["requests"])
    assert "scope" not in sql and "{tenant:" not in sql and "{model:" not in sql
    assert sql.endswith("minute >= toStartOfMinute({start:DateTime64(3, 'UTC')}) AND minute < "
                        "{end:DateTime64(3, 'UTC')}")


def test_formulas_refer_to_selected_metrics_by_alias() -> None:
    """With ``sum(requests) AS requests`` selected, the error rate must not inline ``sum(requests)``."""
    sql = Grafana().sql(Query("events_1m", (m("requests"), m("errors"), m("error_rate"))))
    assert "if(requests = 0, NULL, errors / requests) AS error_rate" in sql
    alone = Grafana().sql(Query("events_1m", (m("error_rate"),)))
    assert "if(sum(requests) = 0, NULL, sum(errors) / sum(requests)) AS error_rate" in alone


def test_unrenderable_and_unsafe_queries_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot render @step"):
        Alerts().sql(Query("events_1m", (m("rps"),), by=("tenant",)))
    with pytest.raises(ValueError, match="shadows a column"):
        Console().sql(Query("scores", (m("contradiction_rate", "value"),)))
    with pytest.raises(KeyError, match="not defined on"):
        Console().sql(Query("scores", (m("error_rate"),)))
    with pytest.raises(ValueError, match="unknown source"):
        Query("nope", (m("requests"),))
