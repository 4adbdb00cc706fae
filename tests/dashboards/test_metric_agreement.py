"""The metrics catalogue rendered for Grafana, the console and the alert evaluator gives the same numbers.

On a real chdb warehouse (the migrations, rows written through the archiver's row builder) seeded with
known traffic (``agreement_seed.py``):

- every metric, on every source it is defined on, per tenant: the Grafana rendering (macros and variables
  expanded the way the plugin and Grafana do), the console's (server-side parameters) and the alerts'
  (a rule's window) agree; sources that are not marked approximate agree with each other (rollup = exact)
- every shared panel returns the same rows to Grafana and to the console, unfiltered and for one tenant
- the figures the products show: the Grafana stat panels of the committed dashboards, the console's
  views and the alert rules, per tenant
chdb: one data directory for the module, opened once in the main thread, never forked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import chdb  # noqa: F401  -- load the engine in the main thread first
import pytest

from consumers.alerts.evaluator import group_values
from consumers.alerts.queries import CATALOGUE, build_query
from consumers.alerts.rules import parse_rules
from consumers.console.dashboard import quality, traffic, usage
from consumers.console.dashboard.frame import Ctx
from consumers.console.dashboard.window import Window, ch_time
from consumers.warehouse import Warehouse, apply_migrations
from schemas.metrics import METRICS, PANELS, Alerts, Console, Grafana, Query, defined_on, expression, m
from tests.dashboards import agreement_seed as seed

SPAN = seed.span()
STEP = 60
BOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "dashboards"
Values = dict[str, float | None]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with Warehouse(f"chdb://{tmp_path_factory.mktemp('agree') / 'warehouse'}") as wh:
        apply_migrations(wh.client)
        seed.insert(wh.client, SPAN)
        yield wh.client


# ---- the three renderings -----------------------------------------------------------------------------

def grafana_sql(sql: str, tenants: tuple[str, ...] = seed.TENANTS) -> str:
    """Expand what the catalogue's Grafana rendering uses, the way the data source plugin (v4) does."""
    lo, hi = int(SPAN.start.timestamp()), int(SPAN.end.timestamp())
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda g: f"{g[1]} >= toDateTime({lo}) AND {g[1]} <= toDateTime({hi})",
                 sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda g: f"toStartOfInterval(toDateTime({g[1]}), INTERVAL {STEP} second)", sql)
    quoted = {"tenant": tenants, "model": seed.MODELS}
    sql = re.sub(r"\$\{(\w+):singlequote\}", lambda g: ",".join(f"'{v}'" for v in quoted[g[1]]), sql)
    sql = sql.replace("$__interval_s", str(STEP)).replace("$threshold", "0.5").replace("$field", "prompt")
    assert "$" not in sql, sql
    return sql


def console_params(tenants: tuple[str, ...] = ()) -> dict[str, Any]:
    params = {"start": ch_time(SPAN.start), "end": ch_time(SPAN.end), "step": STEP, "threshold": 0.5,
              "field": "prompt"}
    return {**params, "tenant": list(tenants)} if tenants else params


def norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())  # Grafana's bucket; the console's is Unix seconds
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.9g}")
    return value


def by_tenant(rows: list[tuple[Any, ...]]) -> Values:
    return {str(t): norm(v) for t, v in rows}


def rows_of(client: Any, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql, parameters=params or {}).result_rows]


def metric_values(client: Any, name: str, source: str) -> dict[str, Values]:
    """One metric per tenant, rendered by each dialect that can (alerts have no buckets nor threshold)."""
    query = Query(source, (m(name, "metric_value"),), by=("tenant",))
    out = {"grafana": by_tenant(rows_of(client, grafana_sql(Grafana().sql(query)))),
           "console": by_tenant(rows_of(client, Console().sql(query), console_params()))}
    if not re.search(r"@(step|threshold)\b", expression(name, source)):
        out["alerts"] = by_tenant(rows_of(client, Alerts().sql(query), {"start": SPAN.start, "now": SPAN.end}))
    return out


def close(a: Values, b: Values) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (a[k] is not None and b[k] is not None and math.isclose(a[k], b[k], rel_tol=1e-9))
        for k in a)


# ---- tests ---------------------------------------------------------------------------------------------

METRIC_SOURCES = [pytest.param(name, src, id=f"{name}@{src}") for name in METRICS for src in sorted(defined_on(name))]


@pytest.mark.parametrize(("name", "source"), METRIC_SOURCES)
def test_each_metric_agrees_across_renderings(client: Any, name: str, source: str) -> None:
    values = metric_values(client, name, source)
    reference = values["console"]
    assert reference and any(v for v in reference.values()), f"the seed does not exercise {name} on {source}"
    for dialect, got in values.items():
        assert close(got, reference), f"{name}@{source}: {dialect} {got} != console {reference}"


@pytest.mark.parametrize("name", [n for n in METRICS if len(defined_on(n)) > 1])
def test_sources_agree_unless_marked_approximate(client: Any, name: str) -> None:
    exact = sorted(s for s in defined_on(name) if s not in METRICS[name].approx)
    values = {s: metric_values(client, name, s)["console"] for s in exact}
    for s in exact[1:]:
        assert close(values[s], values[exact[0]]), f"{name}: {s} {values[s]} != {exact[0]} {values[exact[0]]}"


@pytest.mark.parametrize("tenants", [(), ("acme",)], ids=["all", "acme"])
@pytest.mark.parametrize("panel", list(PANELS))
def test_grafana_and_console_panels_return_the_same_rows(client: Any, panel: str, tenants: tuple[str, ...]) -> None:
    sql = PANELS[panel]
    dialect = Console(tenant_filter=bool(tenants))
    console = sorted((tuple(norm(v) for v in r) for r in rows_of(client, dialect.sql(sql), console_params(tenants))),
                     key=repr)
    grafana = sorted((tuple(norm(v) for v in r) for r in
                      rows_of(client, grafana_sql(Grafana().sql(sql), tenants or seed.TENANTS))), key=repr)
    assert console, f"{panel}: no rows on the seed"
    assert grafana == console


def _grafana_stat(client: Any, board: str, title: str, tenant: str) -> Any:
    panels = json.loads((BOARDS / f"{board}.json").read_text())["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    (row,) = rows_of(client, grafana_sql(panel["targets"][0]["rawSql"], (tenant,)))
    return norm(row[0])


def _console_stats(client: Any, tenant: str) -> dict[str, Any]:
    window = Window(SPAN.start, SPAN.end, STEP, (tenant,), (), None)
    panels = [p for view in (traffic, usage, quality) for p in view.build(Ctx(client, window))]
    return {p["id"]: norm(p["value"]) for p in panels if p["kind"] == "stat"}


def _alert(client: Any, metric: str, tenant: str) -> Any:
    rule = parse_rules({"rules": [{"id": "r", "metric": metric, "threshold": 0, "window": "30m",
                                   "filter": {"tenant": tenant}}]}).rules[0]
    sql, params = build_query(rule, SPAN.end)
    result = client.query(sql, parameters=params)
    (value,) = group_values(rule, list(result.column_names), result.result_rows).values()
    return norm(value)


SHOWN = [  # (board, Grafana stat title, console stat id, alert metric or None)
    ("traffic", "Requests", "requests", None),
    ("traffic", "Error rate", "error_rate", "error_rate"),
    ("traffic", "Latency p95", "latency_p95", None),
    ("traffic", "TTFT p95 (streams)", "ttft_p95", None),
    ("usage", "Cost", "cost", None),
    ("usage", "Input tokens", "input_tokens", None),
    ("usage", "Output tokens", "output_tokens", None),
]


@pytest.mark.parametrize("tenant", seed.TENANTS)
def test_the_figures_the_products_show_agree(client: Any, tenant: str) -> None:
    console = _console_stats(client, tenant)
    for board, title, stat_id, alert in SHOWN:
        shown = _grafana_stat(client, board, title, tenant)
        assert shown is not None and math.isclose(shown, console[stat_id], rel_tol=1e-9), (title, shown, console)
        if alert is not None:
            assert math.isclose(_alert(client, alert, tenant), shown, rel_tol=1e-9), title
    # the alert metrics against the same catalogue metric, rendered for the console's window
    for metric, (name, source) in CATALOGUE.items():
        expected = metric_values(client, name, source)["console"].get(tenant)
        assert close({tenant: _alert(client, metric, tenant)}, {tenant: expected}), metric
    assert console["contradicted"] == metric_values(client, "contradiction_rate", "scores")["console"][tenant]


def test_no_traffic_is_no_value_everywhere(client: Any) -> None:
    """An empty scope has no error rate (not 0 %) in Grafana, on the console and for an alert."""
    assert _grafana_stat(client, "traffic", "Error rate", "nobody") is None
    assert _console_stats(client, "nobody")["error_rate"] is None
    rule = parse_rules({"rules": [{"id": "r", "metric": "error_rate", "threshold": 0, "window": "30m",
                                   "group_by": [], "filter": {"tenant": "nobody"}}]}).rules[0]
    sql, params = build_query(rule, SPAN.end)
    result = client.query(sql, parameters=params)
    assert group_values(rule, list(result.column_names), result.result_rows) == {(): None}
