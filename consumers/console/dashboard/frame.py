"""Building blocks of a dashboard view: parameterised SQL on a ``Window`` and the panel JSON the page draws.

Every user value reaches ClickHouse as a ``{name:Type}`` parameter; only fixed column names from the view
modules and the metrics catalogue (``schemas/metrics``: the aggregate panels, shared with the Grafana
dashboards and the alert rules) are put into the SQL text. Panels are plain dicts (the page renders them generically):

- ``stat``:       ``value`` with a ``unit``
- ``timeseries``: ``time`` (Unix seconds) and ``series`` (``name``, ``values``; ``None`` = no data), drawn
  as ``style`` ``line`` | ``stacked`` (stacked bars) | ``points`` (irregular times, e.g. drift windows)
- ``histogram``:  ``labels`` (categories on x) and ``series``
- ``bars``:       ``items`` (``label``, ``value``), a ranked list
- ``table``:      ``columns`` (``key``, ``label``, ``unit``, ``hidden``, ``link``) and ``rows`` (lists)

``w`` is the panel's width in twelfths of the page; ``section`` groups panels under a heading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.console.dashboard.window import Window, ch_time, iso
from schemas.metrics import PANELS, Console, Query
from schemas.metrics.dialects import DT

MAX_SERIES = 10
OTHER = "(other)"


def num(value: Any) -> float | int | None:
    """A JSON-safe number: NaN/inf (quantiles of nothing) become None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return num(value)
    if isinstance(value, list | tuple):
        return [cell(v) for v in value]
    return value


@dataclass
class Ctx:
    """One view's queries: the caller's window, filters and scope as parameters."""

    client: Client
    window: Window
    params: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        w = self.window
        self.params = {"start": ch_time(w.start), "end": ch_time(w.end), "step": w.step,
                       "threshold": w.threshold, "field": w.field, "metric": w.metric}
        if w.scope is not None:
            self.params["scope"] = list(w.scope)
        if w.tenants:
            self.params["tenant"] = list(w.tenants)
        if w.models:
            self.params["model"] = list(w.models)

    def tenant_filter(self, col: str = "tenant") -> list[str]:
        conds = []
        if "scope" in self.params:
            conds.append(f"{col} IN {{scope:Array(String)}}")
        if "tenant" in self.params:
            conds.append(f"{col} IN {{tenant:Array(String)}}")
        return conds

    def where(self, time_col: str | None, model_col: str | None = None, *, minute: bool = False,
              tenant_col: str = "tenant") -> str:
        """Time window, scope, tenant and model conditions. ``minute``: ``time_col`` is a rollup's minute,
        so the first (partial) minute of the window is included."""
        conds = []
        if time_col is not None:
            lower = f"toStartOfMinute({{start:{DT}}})" if minute else f"{{start:{DT}}}"
            conds += [f"{time_col} >= {lower}", f"{time_col} < {{end:{DT}}}"]
        conds += self.tenant_filter(tenant_col)
        if model_col is not None and "model" in self.params:
            conds.append(f"{model_col} IN {{model:Array(String)}}")
        return " AND ".join(conds) or "1"

    @staticmethod
    def bucket(col: str) -> str:
        """The bucket start of ``col`` as Unix seconds (a multiple of the step)."""
        return f"intDiv(toUnixTimestamp({col}), {{step:UInt32}}) * {{step:UInt32}}"

    @property
    def dialect(self) -> Console:
        """The catalogue's SQL with this window's parameters (and only the conditions the caller needs)."""
        return Console(scoped="scope" in self.params, tenant_filter="tenant" in self.params,
                       model_filter="model" in self.params)

    def panel(self, query: str | Query) -> list[tuple[Any, ...]]:
        """Rows of a catalogue panel (by id) or of a ``Query`` over catalogue metrics."""
        return self.rows(self.dialect.sql(PANELS[query] if isinstance(query, str) else query))

    def one_of(self, query: str | Query) -> tuple[Any, ...]:
        """The single row of an ungrouped catalogue query."""
        rows = self.panel(query)
        return rows[0] if rows else ()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql, parameters=self.params).result_rows]

    def one(self, sql: str) -> tuple[Any, ...]:
        rows = self.rows(sql)
        return rows[0] if rows else ()

    # ---- panels ------------------------------------------------------------------------------------

    def long_series(self, rows: Sequence[tuple[Any, ...]], *, additive: bool) -> list[dict[str, Any]]:
        """Rows ``(bucket, name, value)`` -> one series per name on the window's axis. The ``MAX_SERIES``
        largest are kept; the rest are summed into ``(other)`` when the values add up, else dropped.
        Buckets without a row are 0 for additive series, ``None`` (a gap) otherwise."""
        axis = self.window.axis
        index = {t: i for i, t in enumerate(axis)}
        by_name: dict[str, list[float | int | None]] = {}
        for t, name, value in rows:
            if int(t) not in index:
                continue
            values = by_name.setdefault(str(name), [0 if additive else None] * len(axis))
            values[index[int(t)]] = num(value)
        ranked = sorted(by_name.items(), key=lambda kv: (-sum(v or 0 for v in kv[1]), kv[0]))
        keep, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
        series = [{"name": name, "values": values} for name, values in keep]
        if rest and additive:
            folded = [sum((v[i] or 0) for _, v in rest) for i in range(len(axis))]
            series.append({"name": OTHER, "values": folded})
        return series

    def wide_series(self, rows: Sequence[tuple[Any, ...]], names: Sequence[str], *,
                    additive: bool) -> list[dict[str, Any]]:
        """Rows ``(bucket, v1, v2, ...)`` -> one series per name."""
        return self.long_series([(r[0], name, r[i + 1]) for r in rows for i, name in enumerate(names)],
                                additive=additive)

    def timeseries(self, pid: str, title: str, series: list[dict[str, Any]], *, unit: str = "short",
                   style: str = "line", w: int = 6, description: str = "",
                   time: list[int] | None = None) -> dict[str, Any]:
        return {"id": pid, "kind": "timeseries", "title": title, "unit": unit, "style": style, "w": w,
                "description": description, "time": self.window.axis if time is None else time,
                "series": series}


def stat(pid: str, title: str, value: Any, unit: str = "short", *, w: int = 3,
         description: str = "") -> dict[str, Any]:
    return {"id": pid, "kind": "stat", "title": title, "unit": unit, "w": w, "description": description,
            "value": num(value)}


def bars(pid: str, title: str, rows: Sequence[tuple[Any, ...]], unit: str = "short", *, w: int = 6,
         description: str = "") -> dict[str, Any]:
    return {"id": pid, "kind": "bars", "title": title, "unit": unit, "w": w, "description": description,
            "items": [{"label": str(label), "value": num(value)} for label, value in rows]}


def histogram(pid: str, title: str, labels: Sequence[str], series: list[dict[str, Any]], unit: str = "short",
              *, w: int = 6, description: str = "") -> dict[str, Any]:
    return {"id": pid, "kind": "histogram", "title": title, "unit": unit, "w": w, "description": description,
            "labels": list(labels), "series": series}


def col(key: str, label: str | None = None, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"key": key, "label": label or key.replace("_", " "), "unit": unit, **extra}


def table(pid: str, title: str, columns: list[dict[str, Any]], rows: Sequence[tuple[Any, ...]], *,
          w: int = 12, description: str = "") -> dict[str, Any]:
    return {"id": pid, "kind": "table", "title": title, "w": w, "description": description,
            "columns": columns, "rows": [[cell(v) for v in r] for r in rows]}


def section(title: str, panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**p, "section": title} for p in panels]
