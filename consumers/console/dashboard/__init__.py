"""The console page's data: the Grafana dashboards' views as JSON, under the console's authenticated ``/api``.

- ``GET /api/whoami``               the token's id and tenant scope
- ``GET /api/dashboard/filters``    tenants and models with data in the window (``from``, ``to``, ``tenant``)
- ``GET /api/dashboard/<view>``     ``traffic`` | ``usage`` | ``governance`` | ``quality`` | ``drift`` | ``alerts``:
                                    ``{"view", "window", "panels": [...]}`` (panel shapes: ``frame.py``)

Parameters (``window.py``): ``from``, ``to``, ``tenant``, ``model``; ``threshold`` (quality), ``field`` and
``metric`` (drift). A tenant-scoped token sees only its tenants (its scope is in every query) and naming
another tenant is a 403; bad parameters are a 400 (``{"error": {"code": "invalid_request", ...}}``).
Dashboard reads are aggregates and are not written to ``audit_queries`` (only ``/api/audit`` and
``/api/query`` return rows of the audit log; the page's audit browser goes through ``/api/audit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers.console.dashboard import alerts, drift, governance, quality, traffic, usage
from consumers.console.dashboard.frame import Ctx
from consumers.console.dashboard.window import BadParams, DashboardParams, OutOfScope, Window, resolve
from consumers.console.http import TOKEN_KEY, ApiError, json_response

log = logging.getLogger(__name__)

View = Callable[[Ctx], list[dict[str, Any]]]
VIEWS: dict[str, View] = {"traffic": traffic.build, "usage": usage.build, "governance": governance.build,
                          "quality": quality.build, "drift": drift.build, "alerts": alerts.build}


@dataclass(frozen=True, slots=True)
class DashboardState:
    client: Client


DASHBOARD_KEY = web.AppKey("console_dashboard", DashboardState)


def _window(request: web.Request) -> Window:
    try:
        return resolve(DashboardParams.from_query(request.query.items()), request[TOKEN_KEY])
    except BadParams as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except OutOfScope as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


async def _run(request: web.Request, work: Callable[[Ctx], Any], window: Window) -> Any:
    ctx = Ctx(request.app[DASHBOARD_KEY].client, window)
    try:
        return await asyncio.to_thread(work, ctx)
    except ClickHouseError as exc:
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
        log.warning("dashboard query failed: %s", message)
        raise ApiError(502, "warehouse_error", f"the warehouse query failed: {message}") from None


async def view_handler(request: web.Request) -> web.Response:
    name = request.match_info["view"]
    build = VIEWS.get(name)
    if build is None:
        shown = name if len(name) <= 40 else f"{name[:40]}..."  # never echo a whole overlong segment
        raise ApiError(404, "not_found", f"no dashboard view {shown!r} (views: {', '.join(VIEWS)})")
    window = _window(request)
    panels = await _run(request, build, window)
    return json_response({"view": name, "window": window.describe(), "panels": panels})


def _tenants(ctx: Ctx) -> list[str]:
    return [t for (t,) in ctx.rows("SELECT DISTINCT tenant FROM gatewatch.events_1m WHERE "
                                   f"{ctx.where('minute', minute=True)} ORDER BY tenant LIMIT 1000")]


def _models(ctx: Ctx) -> list[str]:
    return [m for (m,) in ctx.rows("SELECT DISTINCT request_model FROM gatewatch.events_1m WHERE "
                                   f"{ctx.where('minute', minute=True)} AND request_model != '' "
                                   "ORDER BY request_model LIMIT 1000")]


async def filters_handler(request: web.Request) -> web.Response:
    """What the filters may offer: tenants (within the scope) and models (of the chosen tenants) that have
    traffic in the window; neither list is narrowed by its own filter."""
    window = _window(request)
    tenants = await _run(request, _tenants, replace(window, tenants=(), models=()))
    models = await _run(request, _models, replace(window, models=()))
    return json_response({"tenants": tenants, "models": models, "window": window.describe()})


async def whoami_handler(request: web.Request) -> web.Response:
    token = request[TOKEN_KEY]
    return json_response({"token_id": token.id, "scope": list(token.tenants), "admin": token.is_admin})


def add_dashboard_routes(api: web.Application, client: Client) -> None:
    """Mount the routes on the console's ``/api`` sub-application (its auth middleware applies)."""
    api[DASHBOARD_KEY] = DashboardState(client)
    api.router.add_get("/whoami", whoami_handler)
    api.router.add_get("/dashboard/filters", filters_handler)
    api.router.add_get("/dashboard/{view}", view_handler)
