"""Audit search: a validated filter -> one parameterised query over ``events FINAL``, keyset-paginated.

Every value reaches ClickHouse as a ``{name:Type}`` parameter; only fixed SQL fragments are concatenated.
A tenant-scoped caller's tenants are always AND-ed in, whatever the filter says.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, model_validator

from consumers.audit.integrity import _ts
from consumers.warehouse import DATABASE

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
ORDERS = ("asc", "desc")  # by (ts_start, event_id): oldest or newest first
TS_COLUMNS = frozenset({"ts_start", "ts_first_token", "ts_end", "ingested_at"})
_MESSAGE_COLUMNS = frozenset({"request_messages", "request_context"})
_MESSAGE_FIELDS = ("role", "content", "content_sha256", "name")
_DT = "DateTime64(3, 'UTC')"


class AuditFilter(BaseModel):
    """The filters of ``GET /api/audit`` (each optional; all given ones are AND-ed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tenant: tuple[str, ...] = ()
    event_id: str | None = None
    request_id: str | None = None  # the x-request-id the client saw
    key_id: str | None = None
    end_user: str | None = None
    model: str | None = None  # request_model (the alias asked for) or response_model (what was served)
    since: datetime | None = None  # ts_start >= since
    until: datetime | None = None  # ts_start < until
    decision: Literal["allow", "deny", "flag"] | None = None
    rule_id: str | None = None
    pii_entity: str | None = None
    outcome: Literal["completed", "failed", "denied"] | None = None
    scorer: str | None = None
    metric: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    @model_validator(mode="after")
    def _check(self) -> AuditFilter:
        if (self.min_score is not None or self.max_score is not None) and not (self.scorer and self.metric):
            raise ValueError("min_score/max_score need scorer and metric")
        if (self.scorer or self.metric) and self.min_score is None and self.max_score is None:
            raise ValueError("scorer/metric need min_score and/or max_score")
        return self

    @classmethod
    def from_query(cls, query: Mapping[str, Any] | Sequence[tuple[str, str]]) -> AuditFilter:
        """From query-string pairs; ``tenant`` may repeat or be comma-separated."""
        items = query.items() if isinstance(query, Mapping) else query
        data: dict[str, Any] = {}
        tenants: list[str] = []
        for key, value in items:
            if key == "tenant":
                tenants += [t.strip() for t in str(value).split(",") if t.strip()]
            elif value != "":
                data[key] = value
        return cls.model_validate({**data, "tenant": tuple(tenants)})

    def as_params(self) -> dict[str, Any]:
        """The filter as query-string parameters (for the CLI and the audit log)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude_none=True).items():
            if key == "tenant":
                if value:
                    out["tenant"] = ",".join(value)
            else:
                out[key] = _ts(value) if isinstance(value, datetime) else value
        return out


def _utc_text(ts: datetime) -> str:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def where_clause(flt: AuditFilter, scope: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    """``scope`` None = every tenant (admin); otherwise the caller's tenants, always AND-ed in."""
    conds: list[str] = []
    params: dict[str, Any] = {}

    def add(cond: str, **values: Any) -> None:
        conds.append(cond)
        params.update(values)

    if scope is not None:
        add("tenant IN {scope:Array(String)}", scope=list(scope))
    if flt.tenant:
        add("tenant IN {tenant:Array(String)}", tenant=list(flt.tenant))
    if flt.event_id is not None:
        add("event_id = {event_id:String}", event_id=flt.event_id)
    if flt.request_id is not None:
        add("request_id = {request_id:String}", request_id=flt.request_id)
    if flt.key_id is not None:
        add("key_id = {key_id:String}", key_id=flt.key_id)
    if flt.end_user is not None:
        add("end_user = {end_user:String}", end_user=flt.end_user)
    if flt.model is not None:
        add("(request_model = {model:String} OR response_model = {model:String})", model=flt.model)
    if flt.since is not None:
        add(f"ts_start >= {{since:{_DT}}}", since=_utc_text(flt.since))
    if flt.until is not None:
        add(f"ts_start < {{until:{_DT}}}", until=_utc_text(flt.until))
    if flt.decision is not None:
        add("policy_decision = {decision:String}", decision=flt.decision)
    if flt.rule_id is not None:
        add("has(policy_rule_ids, {rule_id:String})", rule_id=flt.rule_id)
    if flt.pii_entity is not None:
        add("pii_counts[{pii_entity:String}] > 0", pii_entity=flt.pii_entity)
    if flt.outcome is not None:
        add("outcome = {outcome:String}", outcome=flt.outcome)
    if flt.scorer is not None:
        score = ["scorer = {scorer:String}", "metric = {metric:String}", "value IS NOT NULL"]
        params.update(scorer=flt.scorer, metric=flt.metric)
        if flt.min_score is not None:
            score.append("value >= {min_score:Float64}")
            params["min_score"] = flt.min_score
        if flt.max_score is not None:
            score.append("value <= {max_score:Float64}")
            params["max_score"] = flt.max_score
        conds.append(f"event_id IN (SELECT event_id FROM {DATABASE}.scores FINAL WHERE {' AND '.join(score)})")
    return (" AND ".join(conds) or "1"), params


def encode_cursor(ts: str, event_id: str, order: str = "asc") -> str:
    data = [ts, event_id] if order == "asc" else [ts, event_id, order]
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_cursor(cursor: str, order: str = "asc") -> tuple[str, str]:
    try:
        ts, event_id, *rest = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if (rest[0] if rest else "asc") != order:
        raise ValueError(f"this cursor belongs to a search in the other order (order={rest[0] if rest else 'asc'})")
    return str(ts), str(event_id)


def jsonable(column: str, value: Any) -> Any:
    """A column value as JSON: timestamps ISO-8601 UTC (``...Z``), messages as objects."""
    if isinstance(value, datetime):
        return _ts(value)
    if column in _MESSAGE_COLUMNS:
        return [dict(m) if isinstance(m, Mapping) else dict(zip(_MESSAGE_FIELDS, m, strict=True)) for m in value]
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True)
class Page:
    columns: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None


def search(client: Client, flt: AuditFilter, scope: Sequence[str] | None, *, limit: int = DEFAULT_LIMIT,
           cursor: str | None = None, order: str = "asc") -> Page:
    """One page, ordered by (ts_start, event_id), oldest first (``order="asc"``) or newest first
    (``"desc"``); ``next_cursor`` is None on the last page and only continues a search in the same order."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    where, params = where_clause(flt, scope)
    if cursor:
        ts, event_id = decode_cursor(cursor, order)
        cmp = ">" if order == "asc" else "<"
        where += f" AND (ts_start, event_id) {cmp} ({{c_ts:{_DT}}}, {{c_id:String}})"
        params.update(c_ts=_utc_text(datetime.fromisoformat(ts.replace("Z", "+00:00"))), c_id=event_id)
    direction = "" if order == "asc" else " DESC"
    sql = (f"SELECT * FROM {DATABASE}.events FINAL WHERE {where} "
           f"ORDER BY ts_start{direction}, event_id{direction} LIMIT {int(limit) + 1}")
    result = client.query(sql, parameters=params)
    columns = list(result.column_names)
    rows = [{c: jsonable(c, v) for c, v in zip(columns, raw, strict=True)} for raw in result.result_rows]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["ts_start"], rows[-1]["event_id"], order) if more else None
    return Page(columns, rows, next_cursor)
