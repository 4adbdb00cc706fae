"""``/api/drift/*`` on the console: the drift baselines the drift scorer persists (``gatewatch.drift_baselines``).

- ``GET  /api/drift/baselines``  ``tenant`` (repeatable), ``model``, ``field``, ``state=active|reset|all``
                                 (default active): baselines without their vectors, newest first; a
                                 tenant-scoped token sees its own tenants only
- ``POST /api/drift/reset``      admin only; ``{"tenant": "T", "model": "M", "field": "prompt"}`` (model and
                                 field optional): mark the matching active baselines reset. Running drift
                                 scorers drop them within ``drift.baseline_refresh`` and collect a new
                                 baseline from the next events of each key (``gatewatch drift reset``).
Both calls are recorded in ``gatewatch.audit_queries`` (endpoints ``drift.baselines``, ``drift.reset``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from consumers.console.api import STATE_KEY, _audited, _require_admin, _Result
from consumers.console.http import ApiError, json_response
from consumers.console.tokens import TokenRecord
from consumers.scorers.drift_store import list_baselines, reset_baselines

_STATES = {"active": ("active",), "reset": ("reset",), "all": ("active", "reset")}


def _optional(value: Any, name: str) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ApiError(400, "invalid_request", f"{name} must be a non-empty string")


async def baselines_handler(request: web.Request) -> web.Response:
    query = request.query
    tenants, state = query.getall("tenant", []), query.get("state", "active")
    model, field = query.get("model"), query.get("field")
    logged = {"tenant": tenants, "model": model, "field": field, "state": state}

    def work(token: TokenRecord) -> _Result:
        if state not in _STATES:
            raise ApiError(400, "invalid_request", f"state must be one of {', '.join(_STATES)}")
        outside = [t for t in tenants if not token.allows(t)]
        if outside:
            raise ApiError(403, "forbidden", f"this token is not scoped to tenant(s) {', '.join(outside)}")
        scope = tenants or (None if token.is_admin else list(token.tenants))
        rows = list_baselines(request.app[STATE_KEY].client, tenants=scope, model=model, field=field,
                              states=_STATES[state])
        return _Result(rows, len(rows))

    rows = (await _audited(request, "drift.baselines", logged, work)).value
    return json_response({"baselines": rows, "count": len(rows)})


async def reset_handler(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    body = body if isinstance(body, dict) else {}
    logged = {k: body.get(k) for k in ("tenant", "model", "field")}

    def work(token: TokenRecord) -> _Result:
        _require_admin(token, "resetting a drift baseline")
        tenant = body.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise ApiError(400, "invalid_request", 'body must be JSON: {"tenant": "T", "model": "M", "field": "F"} '
                                                   "(tenant required)")
        rows = reset_baselines(request.app[STATE_KEY].client, tenant=tenant,
                               model=_optional(body.get("model"), "model"), field=_optional(body.get("field"), "field"))
        return _Result(rows, len(rows))

    rows = (await _audited(request, "drift.reset", logged, work)).value
    return json_response({"reset": rows, "count": len(rows)})


def add_drift_routes(api: web.Application) -> None:
    api.router.add_get("/drift/baselines", baselines_handler)
    api.router.add_post("/drift/reset", reset_handler)
