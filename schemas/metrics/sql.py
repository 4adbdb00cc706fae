"""A ``Query`` to neutral SQL parts: metrics resolved to their expressions on the query's source, the WHERE
conditions kept apart so a dialect can drop the ones it has nothing for (an admin with no tenant filter).

A formula over other metrics refers to a metric by its output alias when the query selects it, and inlines
its expression otherwise. That is not cosmetic: ClickHouse resolves aliases everywhere in a query, so with
``sum(requests) AS requests`` selected, an inlined ``sum(requests)`` elsewhere would read
``sum(sum(requests))`` and fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.metrics.catalogue import METRICS, SOURCES
from schemas.metrics.model import Query, Source

_REF = re.compile(r"\{(\w+)\}")  # ClickHouse parameters always carry a type ({name:Type}); references do not


@dataclass(frozen=True, slots=True)
class Parts:
    select: str
    table: str
    conds: tuple[str, ...]  # AND-ed; each rendered on its own
    tail: str  # GROUP BY / ORDER BY / LIMIT (with a leading space) or ""


def defined_on(name: str) -> frozenset[str]:
    """The sources a metric can be computed on (a formula: where every metric it refers to is)."""
    sql = METRICS[name].sql
    if not isinstance(sql, str):
        return frozenset(sql)
    sources = frozenset(SOURCES)
    for ref in _REF.findall(sql):
        sources &= defined_on(ref)
    return sources


def expression(name: str, source: str, aliases: Mapping[str, str] | None = None) -> str:
    """The metric's SQL on ``source``; ``aliases`` (metric -> output alias) are the metrics the query selects."""
    metric = METRICS.get(name)
    if metric is None:
        raise KeyError(f"no metric {name!r} in the catalogue")
    if source not in defined_on(name):
        raise KeyError(f"metric {name!r} is not defined on {source!r} (only on {sorted(defined_on(name))})")
    if not isinstance(metric.sql, str):
        return metric.sql[source]
    aliases = aliases or {}

    def ref(match: re.Match[str]) -> str:
        other = match[1]
        if other in aliases:
            return aliases[other]
        inner = expression(other, source, aliases)
        return f"({inner})" if isinstance(METRICS[other].sql, str) else inner

    return _REF.sub(ref, metric.sql)


def narrowing(query: Query) -> str | None:
    """The ``where`` every selected metric shares on the query's source, if they all have the same one."""
    wheres = {METRICS[c.metric].where.get(query.source) for c in query.cols if c.metric is not None}
    if len(wheres) != 1:
        return None
    (only,) = wheres
    return only


def _alias(item: str) -> str:
    _, sep, alias = item.rpartition(" AS ")
    return alias.strip() if sep else item.strip()


def _check_aliases(query: Query, conds: list[str]) -> None:
    """An output alias named like a column the WHERE reads would turn that condition into an aggregate
    (ClickHouse substitutes aliases there too): refuse it here rather than fail in the warehouse."""
    for c in query.cols:
        if any(re.search(rf"\b{re.escape(c.alias)}\b", cond) for cond in conds):
            raise ValueError(f"alias {c.alias!r} shadows a column the WHERE of this query reads")


def build(query: Query) -> Parts:
    source: Source = SOURCES[query.source]
    aliases = {c.metric: c.alias for c in query.cols if c.metric is not None}
    cols = []
    for c in query.cols:
        sql = expression(c.metric, query.source, aliases) if c.metric is not None else c.sql
        cols.append(sql if sql == c.alias else f"{sql} AS {c.alias}")
    dims = list(query.by)
    groups = [_alias(d) for d in dims]
    if query.bucket:
        dims.insert(0, f"@bucket({source.time}) AS time")
        groups.insert(0, "time")
    conds = [source.range()] if query.timed else []
    conds += [f"@tenants({source.tenant})", f"@models({source.model})"]
    conds += [w for w in (query.where, narrowing(query)) if w and w not in conds]
    _check_aliases(query, conds)
    tail = f" GROUP BY {', '.join(groups)}" if groups else ""
    order = query.order or ("time" if query.bucket else "")
    tail += f" ORDER BY {order}" if order else ""
    tail += f" LIMIT {query.limit}" if query.limit is not None else ""
    return Parts(", ".join([*dims, *cols]), source.table, tuple(conds), tail)
