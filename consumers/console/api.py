"""``/api/*`` on the console: every route needs ``Authorization: Bearer <console token>``.

- ``GET  /api/audit``         filters (see ``AuditFilter``), ``limit`` (<= 1000), ``cursor``, ``order=asc|desc``,
                              ``format=json|jsonl|csv|parquet`` (non-JSON formats: next cursor in the
                              ``X-Next-Cursor`` header)
- ``GET  /api/audit/verify``  admin only; ``since``/``until``; the tamper-evidence report
- ``POST /api/query``         admin only; ``{"sql": "SELECT ...", "limit": n}``; read-only
- ``GET  /api/dashboard/...``, ``GET /api/whoami``: the console page's data (``consumers.console.dashboard``)
- ``GET  /api/drift/baselines``, ``POST /api/drift/reset`` (admin only): drift baselines (``consumers.console.drift``)
Scoping: a tenant-scoped token sees only its tenants' rows; asking for another tenant is a 403.
Every call (refused ones too) writes a ``gatewatch.audit_queries`` row before the answer is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import ValidationError

from consumers.audit.export import CONTENT_TYPES, FORMATS, render
from consumers.audit.querylog import record_query
from consumers.audit.search import DEFAULT_LIMIT, AuditFilter, search
from consumers.audit.sql import DEFAULT_ROWS, ReadOnlyViolation, run_readonly
from consumers.audit.verify import verify
from consumers.console.dashboard import add_dashboard_routes
from consumers.console.http import TOKEN_KEY, ApiError, error_response, json_response
from consumers.console.tokens import TokenRecord, TokenStore
from consumers.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    tokens: TokenStore
    client: Client


STATE_KEY = web.AppKey("console_api", ApiState)
_json, _error = json_response, error_response


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return _error(401, "unauthorized", "a console token is required: Authorization: Bearer <token>")
    try:
        token = request.app[STATE_KEY].tokens.authenticate(secret.strip())
    except ValueError as exc:  # the token file does not parse
        log.error("console tokens: %s", exc)
        return _error(500, "token_store_error", "the console token file is invalid")
    if token is None:
        return _error(401, "unauthorized", "invalid or revoked console token")
    request[TOKEN_KEY] = token
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.message)


async def _audited(request: web.Request, endpoint: str, filt: dict[str, Any],
                   work: Callable[[TokenRecord], Any]) -> Any:
    """Run ``work(token)`` in a thread and record the call (allowed or refused) in audit_queries."""
    token: TokenRecord = request[TOKEN_KEY]
    client = request.app[STATE_KEY].client
    rows, status, error = 0, 200, None
    try:
        result = await asyncio.to_thread(work, token)
        rows = int(getattr(result, "count", 0) or 0)
        return result
    except ApiError as exc:
        status, error = exc.status, exc.message
        raise
    except (ReadOnlyViolation, ValueError) as exc:
        status, error = 400, str(exc)
        raise ApiError(400, "invalid_request", str(exc)) from None
    except ClickHouseError as exc:
        status, error = 400, str(exc).strip().splitlines()[0][:500]
        raise ApiError(400, "query_failed", error) from None
    finally:
        await _record(client, token_id=token.id, scope=token.tenants, endpoint=endpoint,
                      filter=filt, rows=rows, status=status, error=error)


async def _record(client: Client, **entry: Any) -> None:
    """Record one access in audit_queries; an access that cannot be recorded is not answered (503, retriable:
    the warehouse refuses writes while, e.g., its disk is full or read-only)."""
    try:
        await asyncio.to_thread(record_query, client, **entry)
    except (ClickHouseError, OSError) as exc:
        log.warning("console: access to %s not recorded (%s); answering 503", entry["endpoint"],
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
        raise ApiError(503, "audit_unavailable", "this access could not be recorded in the query audit log "
                       "(the warehouse refuses writes); nothing was answered, retry later") from None


def _require_admin(token: TokenRecord, what: str) -> None:
    if not token.is_admin:
        raise ApiError(403, "forbidden", f"{what} needs an admin console token (scope '*'): "
                                         "a tenant-scoped token could read other tenants' rows this way")


class _Result:
    def __init__(self, value: Any, count: int) -> None:
        self.value, self.count = value, count


def _int_param(query: Any, name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name} must be an integer") from None


async def audit_handler(request: web.Request) -> web.Response:
    query = request.query
    fmt = query.get("format", "json")
    limit = _int_param(query, "limit", DEFAULT_LIMIT)
    cursor = query.get("cursor") or None
    order = query.get("order", "asc")
    pairs = [(k, v) for k, v in query.items() if k not in ("format", "limit", "cursor", "order")]
    logged: dict[str, Any] = {**{k: v for k, v in pairs}, "format": fmt, "limit": limit, "cursor": cursor,
                              "order": order}

    def work(token: TokenRecord) -> _Result:
        if fmt not in FORMATS:
            raise ApiError(400, "invalid_request", f"format must be one of {', '.join(FORMATS)}")
        try:
            flt = AuditFilter.from_query(pairs)
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'filter'}: {e['msg']}" for e in exc.errors())
            raise ApiError(400, "invalid_request", msg) from None
        outside = [t for t in flt.tenant if not token.allows(t)]
        if outside:
            raise ApiError(403, "forbidden", f"this token is not scoped to tenant(s) {', '.join(outside)}")
        page = search(request.app[STATE_KEY].client, flt, None if token.is_admin else token.tenants,
                      limit=limit, cursor=cursor, order=order)
        return _Result(page, len(page.rows))

    page = (await _audited(request, "audit", logged, work)).value
    if fmt == "json":
        return _json({"rows": page.rows, "count": len(page.rows), "next_cursor": page.next_cursor})
    body = await asyncio.to_thread(render, fmt, page.columns, page.rows)
    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
    return web.Response(body=body, content_type=CONTENT_TYPES[fmt], headers=headers)


def _time_param(query: Any, name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: not an ISO-8601 time") from None


async def verify_handler(request: web.Request) -> web.Response:
    logged = {k: request.query.get(k) for k in ("since", "until")}

    def work(token: TokenRecord) -> _Result:
        _require_admin(token, "verify")
        report = verify(request.app[STATE_KEY].client, _time_param(request.query, "since"),
                        _time_param(request.query, "until"))
        return _Result(report, report["checked"])

    return _json((await _audited(request, "audit.verify", logged, work)).value)


async def query_handler(request: web.Request) -> web.Response:
    sql: str | None = None
    limit = DEFAULT_ROWS
    try:
        body = orjson.loads(await request.read())
        sql, limit = body["sql"], int(body.get("limit", DEFAULT_ROWS))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        sql = None
    if not isinstance(sql, str):
        sql = None

    def work(token: TokenRecord) -> _Result:
        _require_admin(token, "raw SQL")
        if sql is None:
            raise ApiError(400, "invalid_request", 'body must be JSON: {"sql": "SELECT ...", "limit": 1000}')
        result = run_readonly(request.app[STATE_KEY].client, sql, limit=limit)
        return _Result(result, len(result["rows"]))

    return _json((await _audited(request, "query", {"sql": sql, "limit": limit}, work)).value)


def add_api_routes(app: web.Application, warehouse: Warehouse, tokens: TokenStore) -> None:
    """Mount ``/api`` (own client on the warehouse, auth middleware) on the console app."""
    api = web.Application(middlewares=[auth_middleware])
    api[STATE_KEY] = ApiState(tokens, warehouse.new_client())
    api.router.add_get("/audit", audit_handler)
    api.router.add_get("/audit/verify", verify_handler)
    api.router.add_post("/query", query_handler)
    add_dashboard_routes(api, warehouse.new_client())
    from consumers.console.drift import add_drift_routes  # it builds on this module's helpers

    add_drift_routes(api)
    app.add_subapp("/api", api)
