"""The catalogue's vocabulary: a ``Source`` (a table and its time, tenant and model columns), a ``Metric`` (one
aggregate formula per source, or a formula over other metrics) and a ``Query`` (metrics and dimensions over a
source: what a panel or an alert rule asks for).

Nothing here knows Grafana, the console or the alert evaluator: SQL text uses neutral placeholders that a
``Dialect`` (``dialects.py``) renders for each of them:

- ``@range(col)``, ``@range_minute(col)``: the time range on ``col`` (``_minute``: ``col`` is a rollup's minute)
- ``@bucket(col)``: the start of ``col``'s time bucket
- ``@tenants(col)``, ``@models(col)``: the tenant scope/filter and the model filter on ``col``
- ``@step`` (bucket width in seconds), ``@threshold`` (toxicity threshold), ``@field`` (prompt | response)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SOURCE_NAMES = ("events", "events_1m", "pii", "scores", "scores_1m", "scored_events", "drift")


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    table: str  # the FROM clause; may hold placeholders (a subquery's own time range)
    time: str
    model: str  # the model column as a non-null string
    tenant: str = "tenant"
    rollup: bool = False  # ``time`` is a minute bucket: a range starts at the minute holding its start

    def range(self) -> str:
        return f"@range_minute({self.time})" if self.rollup else f"@range({self.time})"


@dataclass(frozen=True, slots=True)
class Metric:
    """One definition per metric. ``sql`` maps a source name to an aggregate expression; a plain string is a
    formula over other metrics (``{name}``), available on every source that defines them all.

    An expression is self-contained (conditions inside ``countIf``/``quantileIf``...), so its value never
    depends on the query around it and metrics combine freely. ``where`` is only a narrowing: the rows
    outside it never count, so a query whose metrics all share it adds it to WHERE (reads less, drops
    groups with nothing to measure). ``approx`` says, per source, why a value there is not the exact
    definition (the rollups' t-digests); elsewhere every source must give the same number."""

    name: str
    description: str
    unit: str  # count | ratio | ms | usd | per_s | per_min | score
    sql: str | Mapping[str, str]
    where: Mapping[str, str] = field(default_factory=dict)
    approx: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.where) | set(self.approx) | (set() if isinstance(self.sql, str) else set(self.sql))
        if unknown - set(SOURCE_NAMES):
            raise ValueError(f"metric {self.name}: unknown sources {sorted(unknown - set(SOURCE_NAMES))}")


@dataclass(frozen=True, slots=True)
class Col:
    """A selected column: a catalogue metric (``metric``) or a plain expression that is no metric (``sql``:
    ``max(ts_start)``, ``anyLast(policy_version)``)."""

    alias: str
    metric: str | None = None
    sql: str | None = None


def m(name: str, alias: str | None = None) -> Col:
    return Col(alias or name, metric=name)


def col(sql: str, alias: str) -> Col:
    return Col(alias, sql=sql)


@dataclass(frozen=True, slots=True)
class Query:
    """``SELECT [bucket AS time,] by..., cols... FROM source WHERE range AND tenants AND models [AND where]
    GROUP BY ...``. ``by`` items are SQL (``tenant``, ``request_model AS model``); ``timed=False`` leaves the
    time range out (the query's ``where`` sets its own period, e.g. this calendar month)."""

    source: str
    cols: tuple[Col, ...]
    by: tuple[str, ...] = ()
    bucket: bool = False
    where: str = ""
    order: str = ""
    limit: int | None = None
    timed: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCE_NAMES:
            raise ValueError(f"unknown source {self.source!r}")
        if not self.cols:
            raise ValueError("a query selects at least one column")
