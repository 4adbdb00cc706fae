"""Generate the Grafana dashboards (``dashboards/*.json``) from the panel definitions below.

Aggregate panels take their SQL from the metrics catalogue (``schemas/metrics``: one formula per metric,
shared with the console and the alert rules, rendered here with the plugin's macros); the row listings
below (alerts, worst examples, drift windows, the toxicity histogram) write their own.

    python dashboards/grafana/build.py          # rewrite the JSON files
    python dashboards/grafana/build.py --check  # exit 1 when a JSON file is out of date (CI / tests)

Every panel queries ClickHouse through the official ``grafana-clickhouse-datasource`` plugin (data source
uid ``gatewatch-clickhouse``, provisioned from ``provisioning/datasources/clickhouse.yaml``) with its
macros (``$__timeFilter``, ``$__timeInterval``, ``$__interval_s``, ...) and the dashboard variables
``$tenant`` / ``$model`` (multi-value, "All"). Time series return a ``time`` column plus one string
column that names the series (long format; the plugin splits it into one series per value).

Which table: per-minute counters and token/cost sums come from the rollups ``events_1m`` /
``scores_1m`` (cheap at any range; a redelivered batch after a crash may be counted twice there);
percentiles, breakdowns by columns the rollups lack (error type, policy rule, PII entity, key) and
row-level tables read ``events FINAL`` / ``scores FINAL`` / ``drift FINAL`` (exact, one row per fact).

Every column a panel's field config names (``byName`` overrides) must come back from its query:
tests/dashboards/test_dashboard_sql.py runs each query against chdb with the real migrations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

try:
    from schemas.metrics import PANELS, Grafana
    from schemas.metrics.catalogue import TOX
except ModuleNotFoundError:  # run as a script from a checkout without an install: the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from schemas.metrics import PANELS, Grafana
    from schemas.metrics.catalogue import TOX

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "grafana-clickhouse-datasource", "uid": "gatewatch-clickhouse"}
TIME_SERIES, TABLE = 1, 0  # the plugin's query formats


def q(panel: str) -> str:
    """A panel query from the metrics catalogue (schemas/metrics/panels.py), the same one the console runs."""
    return Grafana().sql(PANELS[panel])


# filters of the row listings (not in the catalogue): template variables, multi-value -> quoted list
T = "tenant IN (${tenant:singlequote})"
SC = f"$__timeFilter(ts) AND {T} AND request_model IN (${{model:singlequote}})"


def _var(name: str, label: str, sql: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": sql,
            "definition": sql, "refresh": 2, "multi": True, "includeAll": True, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def _custom(name: str, label: str, options: list[str], default: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "custom", "query": ",".join(options), "multi": False,
            "includeAll": False, "current": {"selected": True, "text": default, "value": default},
            "options": [{"selected": o == default, "text": o, "value": o} for o in options]}


def _textbox(name: str, label: str, default: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "textbox", "query": default,
            "current": {"selected": False, "text": default, "value": default}}


TENANT_VAR = _var("tenant", "Tenant", "SELECT DISTINCT tenant FROM gatewatch.events_1m "
                  "WHERE $__timeFilter(minute) ORDER BY tenant")
MODEL_VAR = _var("model", "Model", "SELECT DISTINCT request_model FROM gatewatch.events_1m "
                 "WHERE $__timeFilter(minute) AND tenant IN (${tenant:singlequote}) ORDER BY request_model")


class Board:
    """Panels laid out left to right, 24 grid units per row."""

    def __init__(self, uid: str, title: str, description: str, variables: list[dict[str, Any]]) -> None:
        self.uid, self.title, self.description, self.variables = uid, title, description, variables
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}})
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0

    def panel(self, kind: str, title: str, sql: str, *, w: int = 12, h: int = 8, fmt: int = TIME_SERIES,
              unit: str | None = None, columns: dict[str, dict[str, Any]] | None = None,
              description: str = "", interval: str | None = "1m", options: dict[str, Any] | None = None,
              custom: dict[str, Any] | None = None) -> dict[str, Any]:
        """``columns``: column name -> field properties (unit, displayName, links, ...); every name is a
        column the query must return (tests check it)."""
        if self._x + w > 24:
            self._newline()
        defaults: dict[str, Any] = {"custom": custom or {}}
        if unit:
            defaults["unit"] = unit
        overrides = [{"matcher": {"id": "byName", "options": name},
                      "properties": [{"id": k, "value": v} for k, v in props.items()]}
                     for name, props in (columns or {}).items()]
        p: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y},
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": options or {},
            "targets": [{"refId": "A", "datasource": DS, "editorType": "sql", "queryType": "table"
                         if fmt == TABLE else "timeseries", "format": fmt, "rawSql": " ".join(sql.split())}],
        }
        if interval:
            p["interval"] = interval  # the rollups have one-minute resolution
        self.panels.append(p)
        self._x += w
        self._row_h = max(self._row_h, h)
        return p

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": ["gatewatch"],
            "editable": True, "schemaVersion": 39, "version": 1, "graphTooltip": 1, "timezone": "utc",
            "refresh": "30s", "time": {"from": "now-6h", "to": "now"}, "fiscalYearStartMonth": 0,
            "liveNow": False, "annotations": {"list": []},
            "links": [{"title": "Gatewatch", "type": "dashboards", "tags": ["gatewatch"], "asDropdown": True}],
            "templating": {"list": self.variables}, "panels": self.panels,
        }


def _ts_opts() -> dict[str, Any]:
    return {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def traffic() -> Board:
    b = Board("gatewatch-traffic", "Gatewatch / Traffic", "Requests, latency, time to first token and errors "
              "by tenant, model and upstream deployment.", [TENANT_VAR, MODEL_VAR])
    b.panel("stat", "Requests", q("requests"),
            w=6, h=4, fmt=TABLE, columns={"requests": {"unit": "short"}})
    b.panel("stat", "Error rate", q("error_rate"), w=6, h=4, fmt=TABLE,
            columns={"error_rate": {"unit": "percentunit"}})
    b.panel("stat", "Latency p95", q("latency_p95"),
            w=6, h=4, fmt=TABLE, columns={"p95": {"unit": "ms"}}, interval=None)
    b.panel("stat", "TTFT p95 (streams)", q("ttft_p95"),
            w=6, h=4, fmt=TABLE, columns={"p95": {"unit": "ms"}}, interval=None)
    b.row("Throughput")
    b.panel("timeseries", "Requests/s by tenant", q("rps_by_tenant"), unit="reqps", options=_ts_opts())
    b.panel("timeseries", "Requests/s by model", q("rps_by_model"), unit="reqps", options=_ts_opts())
    b.panel("timeseries", "Requests/s by upstream deployment", q("rps_by_upstream"), unit="reqps",
            options=_ts_opts(), description="'(none)': the request never reached an upstream (denied, "
            "invalid, no deployment).")
    b.panel("timeseries", "Outcomes", q("outcomes"),
            unit="short", custom={"drawStyle": "bars", "stacking": {"mode": "normal"}},
            columns={"completed": {"color": {"mode": "fixed", "fixedColor": "green"}},
                     "failed": {"color": {"mode": "fixed", "fixedColor": "red"}},
                     "denied": {"color": {"mode": "fixed", "fixedColor": "orange"}}})
    b.row("Latency")
    b.panel("timeseries", "Latency p50 / p95 / p99", q("latency"),
            unit="ms", interval=None, description="Request duration to the "
            "last byte, as the gateway measured it (exact quantiles over the audit log).")
    b.panel("timeseries", "Time to first token p50 / p95 / p99 (streams)", q("ttft"), unit="ms", interval=None)
    b.panel("timeseries", "Latency p99 by upstream deployment", q("latency_p99_by_upstream"), unit="ms",
            options=_ts_opts(), description="t-digest p99 from the per-minute rollup.")
    b.row("Errors")
    b.panel("timeseries", "Errors by type", q("errors_by_type"), unit="short",
            interval=None, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}, options=_ts_opts())
    b.panel("table", "Errors by type and upstream", q("errors_table"), fmt=TABLE, interval=None,
            columns={"errors": {"unit": "short"}, "last_seen": {"unit": "dateTimeAsIso"}})
    b.row("Alerts")
    al = ("(group_labels['tenant'] = '' OR group_labels['tenant'] IN (${tenant:singlequote})) AND "
          "($__timeFilter(started_at) OR state = 'firing')")
    b.panel("stat", "Alerts firing", f"SELECT countIf(state = 'firing') AS firing FROM gatewatch.alerts FINAL "
            f"WHERE {al}", w=6, fmt=TABLE, interval=None, description="From the worker's alert evaluator "
            "(gatewatch.alerts; rules in the worker's alerts configuration).",
            columns={"firing": {"thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": 1}]}}})
    b.panel("table", "Alerts (firing first, then most recent)", "SELECT started_at AS time, state, severity, "
            "rule_id, metric, group_key, op, threshold, value, resolved_at, summary FROM gatewatch.alerts FINAL "
            f"WHERE {al} ORDER BY state = 'firing' DESC, started_at DESC LIMIT 200", w=18, fmt=TABLE,
            interval=None, columns={"time": {"unit": "dateTimeAsIso"}, "resolved_at": {"unit": "dateTimeAsIso"},
                                    "state": {"mappings": [{"type": "value", "options": {
                                        "firing": {"color": "red", "index": 0},
                                        "resolved": {"color": "green", "index": 1}}}]}})
    b.row("Breakdown")
    b.panel("table", "By tenant, model and upstream", q("breakdown"), w=24, h=10, fmt=TABLE, columns={
                "error_rate": {"unit": "percentunit"}, "latency_p50": {"unit": "ms"},
                "latency_p99": {"unit": "ms"}, "ttft_p99": {"unit": "ms"}, "requests": {"unit": "short"}})
    return b


def usage() -> Board:
    b = Board("gatewatch-usage", "Gatewatch / Usage & cost", "Tokens and cost per tenant, model and API key; "
              "budget consumption in the periods the gateway's budgets count (UTC day, calendar month).",
              [TENANT_VAR, MODEL_VAR])
    b.panel("stat", "Cost", q("cost"),
            w=8, h=4, fmt=TABLE, columns={"cost_usd": {"unit": "currencyUSD", "decimals": 2}})
    b.panel("stat", "Input tokens", q("input_tokens"), w=8, h=4, fmt=TABLE, columns={"input_tokens": {"unit": "short"}})
    b.panel("stat", "Output tokens", q("output_tokens"),
            w=8, h=4, fmt=TABLE, columns={"output_tokens": {"unit": "short"}})
    b.row("Over time")
    b.panel("timeseries", "Tokens/min by tenant", q("tokens_by_tenant"), unit="short",
            options=_ts_opts())
    b.panel("timeseries", "Input vs output tokens", q("tokens_in_out"), unit="short", custom={"drawStyle": "bars",
                                                                  "stacking": {"mode": "normal"}})
    b.panel("timeseries", "Cost by model", q("cost_by_model"), unit="currencyUSD", options=_ts_opts(),
            custom={"drawStyle": "bars", "stacking": {"mode": "normal"}})
    b.panel("piechart", "Cost share by tenant", q("cost_share"), fmt=TABLE,
            columns={"cost_usd": {"unit": "currencyUSD"}},
            options={"reduceOptions": {"values": True, "calcs": [], "fields": "/^cost_usd$/"},
                     "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                    "values": ["value", "percent"]}})
    b.row("Budgets")
    b.panel("table", "Budget consumption per tenant and key (today UTC / this month)", q("budgets"),
            w=24, h=10, fmt=TABLE, interval=None,
            description="Consumption counted the way the gateway's key budgets count it (UTC day, calendar "
            "month), independent of the time picker. The limits themselves live in the keys file "
            "(`gatewatch keys list`); 'limited_requests' are requests refused by a rate limit or budget.",
            columns={"tokens_today": {"unit": "short"}, "cost_today": {"unit": "currencyUSD"},
                     "tokens_month": {"unit": "short"}, "cost_month": {"unit": "currencyUSD"},
                     "limited_requests": {"unit": "short"}})
    b.panel("table", "Usage by tenant and model (selected range)", q("usage_table"), w=24, h=10, fmt=TABLE,
            columns={"cost_usd": {"unit": "currencyUSD"}, "cost_per_1k_requests": {"unit": "currencyUSD"},
                     "input_tokens": {"unit": "short"}, "output_tokens": {"unit": "short"}})
    return b


def governance() -> Board:
    b = Board("gatewatch-governance", "Gatewatch / Governance", "Policy decisions, denials by rule, PII "
              "detections by entity type and redaction volume.", [TENANT_VAR, MODEL_VAR])
    b.panel("timeseries", "Policy decisions", q("decisions"), unit="short", interval=None,
            custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}, options=_ts_opts())
    b.panel("barchart", "Denials by rule", q("denials_by_rule"),
            fmt=TABLE, interval=None, columns={"denials": {"unit": "short"}},
            options={"orientation": "horizontal", "xField": "rule", "showValue": "auto"})
    b.panel("timeseries", "Denials by rule over time", q("denials_over_time"),
            unit="short", interval=None, options=_ts_opts())
    b.panel("table", "Denials and flags by tenant", q("decisions_by_tenant"),
            fmt=TABLE, interval=None, columns={"denial_rate": {"unit": "percentunit"}})
    b.row("PII and redaction")
    b.panel("timeseries", "PII detections by entity type", q("pii_over_time"), unit="short", interval=None,
            custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}, options=_ts_opts())
    b.panel("barchart", "PII detections by entity type (total)", q("pii_by_entity"), fmt=TABLE, interval=None,
            columns={"detections": {"unit": "short"}},
            options={"orientation": "horizontal", "xField": "entity", "showValue": "auto"})
    b.panel("timeseries", "Redaction volume", q("redaction_volume"), unit="short", interval=None,
            description="Requests whose prompt or answer had PII replaced, and how many entities were replaced.")
    b.panel("timeseries", "Share of requests redacted", q("redacted_share"), unit="percentunit",
            interval=None, options=_ts_opts())
    return b


def quality() -> Board:
    thr = _custom("threshold", "Toxicity threshold", ["0.3", "0.5", "0.7", "0.9"], "0.5")
    console = _textbox("console_url", "Console URL", "http://localhost:8081")
    b = Board("gatewatch-quality", "Gatewatch / Quality & safety", "Toxicity and factuality scores of every "
              "exchange (scorer rows in gatewatch.scores), with the worst examples linked to the audit log.",
              [TENANT_VAR, MODEL_VAR, thr, console])
    tox = TOX
    b.panel("barchart", "Toxicity distribution", "SELECT toString(floor(value, 1)) AS bucket, "
            "countIf(target = 'prompt') AS prompt, countIf(target = 'response') AS response "
            f"FROM gatewatch.scores FINAL WHERE {SC} AND {tox} GROUP BY bucket ORDER BY bucket",
            fmt=TABLE, interval=None, description="Exchanges by toxicity score (0.1-wide buckets).",
            columns={"prompt": {"unit": "short"}, "response": {"unit": "short"}},
            options={"xField": "bucket", "stacking": "none", "showValue": "never"})
    b.panel("timeseries", "Rate over threshold ($threshold)", q("toxicity_over_threshold"),
            unit="percentunit", interval=None, options=_ts_opts())
    b.panel("timeseries", "Toxicity by label (average, per minute)", q("toxicity_by_label"), options=_ts_opts())
    b.panel("table", "Toxicity by tenant", q("toxicity_by_tenant"), fmt=TABLE, interval=None,
            columns={"over_threshold": {"unit": "percentunit"}, "avg_score": {"decimals": 3}})
    b.row("Factuality")
    b.panel("timeseries", "Factuality: support and contradiction", q("factuality"),
            options=_ts_opts(), custom={"min": 0},
            description="Mean entailment of the answer's sentences by the request's context (support) and the "
            "highest contradiction probability; exchanges without context are not applicable and skipped.")
    b.panel("timeseries", "Factuality labels", q("factuality_labels"), unit="short", interval=None,
            custom={"drawStyle": "bars", "stacking": {"mode": "normal"}})
    b.panel("table", "Factuality by tenant and model", q("factuality_by_model"), w=24, fmt=TABLE,
            interval=None, columns={"support": {"decimals": 3}, "contradicted_share": {"unit": "percentunit"}})
    b.row("Worst examples")
    # the console's audit API (GET /api/audit, consumers/audit/search.py AuditFilter): the event id, with
    # tenant and [ts_start, ts_start + 1 ms) so the lookup stays on the table's sort key
    link = [{"title": "Open in the audit log", "targetBlank": True,
             "url": "${console_url}/api/audit?tenant=${__data.fields.tenant:percentencode}"
                    "&event_id=${__data.fields.event_id:percentencode}"
                    "&since=${__data.fields.audit_since:percentencode}"
                    "&until=${__data.fields.audit_until:percentencode}&limit=10"}]
    hidden = {"custom.hidden": True}
    b.panel("table", "Worst examples (most toxic, least supported, most contradicted)",
            "SELECT s.ts AS time, s.tenant AS tenant, s.request_model AS model, s.problem AS problem, "
            "s.target AS target, s.value AS score, s.event_id AS event_id, e.outcome AS outcome, "
            "concat(replaceOne(toString(e.ts_start), ' ', 'T'), 'Z') AS audit_since, "
            "concat(replaceOne(toString(e.ts_start + toIntervalMillisecond(1)), ' ', 'T'), 'Z') AS audit_until "
            "FROM ("
            "SELECT ts, tenant, request_model, target, value, event_id, 'toxic' AS problem "
            f"FROM gatewatch.scores FINAL WHERE {SC} AND {tox} AND value >= $threshold "
            "ORDER BY value DESC LIMIT 50 "
            "UNION ALL SELECT ts, tenant, request_model, target, value, event_id, 'contradicted' AS problem "
            f"FROM gatewatch.scores FINAL WHERE {SC} AND scorer = 'factuality' AND metric = 'contradiction' "
            "AND label = 'contradicted' ORDER BY value DESC LIMIT 50 "
            "UNION ALL SELECT ts, tenant, request_model, target, value, event_id, 'unsupported' AS problem "
            f"FROM gatewatch.scores FINAL WHERE {SC} AND scorer = 'factuality' AND metric = 'support' "
            "AND label = 'unsupported' ORDER BY value ASC LIMIT 50) AS s "
            "INNER JOIN (SELECT event_id, outcome, ts_start FROM gatewatch.events FINAL WHERE $__timeFilter(ts_start) "
            f"AND {T}) AS e ON e.event_id = s.event_id ORDER BY problem, score DESC",
            w=24, h=12, fmt=TABLE, interval=None,
            description="Click an event id to open its audit entry in the console (set the Console URL "
                        "variable to where the worker's console is reachable from your browser).",
            columns={"event_id": {"links": link}, "score": {"decimals": 3}, "time": {"unit": "dateTimeAsIso"},
                     "tenant": {}, "audit_since": hidden, "audit_until": hidden})
    return b


def drift() -> Board:
    metric = _custom("drift_metric", "Drift metric", ["centroid_cosine", "mmd2", "mmd2_pvalue"],
                     "centroid_cosine")
    field = _custom("field", "Field", ["prompt", "response"], "prompt")
    b = Board("gatewatch-drift", "Gatewatch / Drift", "Embedding drift of prompts and answers per tenant, "
              "model and field: one row per closed window compared with the baseline.",
              [TENANT_VAR, MODEL_VAR, metric, field])
    dr = (f"$__timeFilter(window_end) AND {T} AND model IN (${{model:singlequote}}) AND field = '$field'")
    b.panel("timeseries", "$drift_metric per tenant / model ($field)", "SELECT window_end AS time, "
            "concat(tenant, ' / ', model) AS series, value FROM gatewatch.drift FINAL "
            f"WHERE {dr} AND metric = '$drift_metric' ORDER BY time", w=24, interval=None, options=_ts_opts(),
            custom={"drawStyle": "line", "showPoints": "always"})
    b.panel("timeseries", "Drifted windows", q("drifted_windows"),
            interval=None, unit="short", custom={"drawStyle": "bars"}, options=_ts_opts())
    b.panel("timeseries", "Distance of each exchange to the baseline centroid (average)",
            q("centroid_distance"), options=_ts_opts())
    b.panel("table", "Drifted windows (all fields)", "SELECT window_start, window_end, tenant, model, field, "
            "maxIf(value, metric = 'centroid_cosine') AS centroid_cosine, maxIf(value, metric = 'mmd2') AS mmd2, "
            "maxIf(value, metric = 'mmd2_pvalue') AS pvalue, any(baseline_size) AS baseline_size, "
            "any(window_size) AS window_size FROM gatewatch.drift FINAL WHERE $__timeFilter(window_end) AND "
            f"{T} AND model IN (${{model:singlequote}}) GROUP BY window_start, window_end, tenant, model, field "
            "HAVING max(drifted) = 1 ORDER BY window_end DESC LIMIT 200", w=24, h=10, fmt=TABLE, interval=None,
            columns={"window_start": {"unit": "dateTimeAsIso"}, "window_end": {"unit": "dateTimeAsIso"},
                     "centroid_cosine": {"decimals": 4}, "mmd2": {"decimals": 5}, "pvalue": {"decimals": 4}})
    return b


BOARDS = {"traffic": traffic, "usage": usage, "governance": governance, "quality": quality, "drift": drift}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(make().json(), indent=2) + "\n" for name, make in BOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python dashboards/grafana/build.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
