"""Render the catalogue's neutral SQL for each consumer.

- ``Grafana``: the grafana-clickhouse-datasource macros (``$__timeFilter``, ``$__timeInterval``,
  ``$__interval_s``) and the dashboards' variables (``$tenant``/``$model`` multi-value, ``$threshold``,
  ``$field``), exactly as dashboards/grafana/build.py has always written them.
- ``Console``: ClickHouse ``{name:Type}`` parameters that clickhouse-connect binds server-side; no value
  is ever put into the SQL text. The caller's scope and filters decide which conditions exist.
- ``Alerts``: the window ``(start, now]`` of a rule and its ``filter`` as array parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.metrics.model import Query
from schemas.metrics.sql import build

DT = "DateTime64(3, 'UTC')"
_AT = re.compile(r"@(\w+)")


class Dialect:
    """Placeholders -> SQL. A condition that renders to ``1`` (nothing to filter) is left out of WHERE."""

    def sql(self, query: Query) -> str:
        parts = build(query)
        conds = [c for c in (self.render(c) for c in parts.conds) if c != "1"]
        return (f"SELECT {self.render(parts.select)} FROM {self.render(parts.table)} "
                f"WHERE {' AND '.join(conds) or '1'}{self.render(parts.tail)}")

    def render(self, text: str) -> str:
        out, i = [], 0
        while (match := _AT.search(text, i)) is not None:
            out.append(text[i:match.start()])
            arg, i = _argument(text, match.end())
            out.append(self.placeholder(match[1], arg))
        out.append(text[i:])
        return "".join(out)

    def placeholder(self, name: str, arg: str | None) -> str:
        handler = getattr(self, f"p_{name}", None)
        if handler is None:
            raise ValueError(f"{type(self).__name__} cannot render @{name}")
        return handler(arg) if arg is not None else handler()


def _argument(text: str, start: int) -> tuple[str | None, int]:
    """``(arg)`` at ``start`` with balanced parentheses (``@models(ifNull(request_model, ''))``)."""
    if start >= len(text) or text[start] != "(":
        return None, start
    depth = 0
    for j in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return text[start + 1:j], j + 1
    raise ValueError(f"unbalanced placeholder argument in {text!r}")


class Grafana(Dialect):
    def p_range(self, c: str) -> str:
        return f"$__timeFilter({c})"

    p_range_minute = p_range

    def p_bucket(self, c: str) -> str:
        return f"$__timeInterval({c})"

    def p_tenants(self, c: str) -> str:
        return f"{c} IN (${{tenant:singlequote}})"

    def p_models(self, c: str) -> str:
        return f"{c} IN (${{model:singlequote}})"

    def p_step(self) -> str:
        return "$__interval_s"

    def p_threshold(self) -> str:
        return "$threshold"

    def p_field(self) -> str:
        return "'$field'"


@dataclass(frozen=True, slots=True)
class Console(Dialect):
    """Parameters: ``start``/``end`` (DateTime64), ``step`` (UInt32), ``threshold`` (Float64), ``field``
    (String); ``scope`` (the token's tenants), ``tenant`` and ``model`` (arrays) when present."""

    scoped: bool = False
    tenant_filter: bool = False
    model_filter: bool = False

    def p_range(self, c: str) -> str:
        return f"{c} >= {{start:{DT}}} AND {c} < {{end:{DT}}}"

    def p_range_minute(self, c: str) -> str:  # the rollup's first (partial) minute is included
        return f"{c} >= toStartOfMinute({{start:{DT}}}) AND {c} < {{end:{DT}}}"

    def p_bucket(self, c: str) -> str:  # Unix seconds, a multiple of the step
        return f"intDiv(toUnixTimestamp({c}), {{step:UInt32}}) * {{step:UInt32}}"

    def p_tenants(self, c: str) -> str:
        conds = [f"{c} IN {{scope:Array(String)}}"] if self.scoped else []
        conds += [f"{c} IN {{tenant:Array(String)}}"] if self.tenant_filter else []
        return " AND ".join(conds) or "1"

    def p_models(self, c: str) -> str:
        return f"{c} IN {{model:Array(String)}}" if self.model_filter else "1"

    def p_step(self) -> str:
        return "{step:UInt32}"

    def p_threshold(self) -> str:
        return "{threshold:Float64}"

    def p_field(self) -> str:
        return "{field:String}"


@dataclass(frozen=True, slots=True)
class Alerts(Dialect):
    """``filters``: ``tenant``/``model`` -> the Array(String) parameter holding the rule's filter values;
    ``start``: the parameter opening the window (``start``, or ``month_start`` for budgets)."""

    filters: Mapping[str, str] = field(default_factory=dict)
    start: str = "start"

    def p_range(self, c: str) -> str:
        return f"{c} > {{{self.start}:{DT}}} AND {c} <= {{now:{DT}}}"

    def p_range_minute(self, c: str) -> str:  # the minute holding the window's start counts, as on the console
        return f"{c} >= toStartOfMinute({{{self.start}:{DT}}}) AND {c} <= {{now:{DT}}}"

    def p_tenants(self, c: str) -> str:
        return f"{c} IN {{{self.filters['tenant']}:Array(String)}}" if "tenant" in self.filters else "1"

    def p_models(self, c: str) -> str:
        return f"{c} IN {{{self.filters['model']}:Array(String)}}" if "model" in self.filters else "1"
