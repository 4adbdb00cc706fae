"""Request ids and OpenAI-shaped errors for everything, including aiohttp's own 404/405/413."""

from __future__ import annotations

import logging
import re

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.ids import new_id

log = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_HTTP_ERRORS = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
}


def request_id_of(request: web.Request) -> str:
    rid = request.headers.get("x-request-id")
    return rid if rid and _VALID_ID.match(rid) else new_id()


def error_response(status: int, body: dict[str, object], rid: str, headers: dict[str, str] | None = None
                   ) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers={"x-request-id": rid, **(headers or {})})


@web.middleware
async def errors_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    rid = request_id_of(request)
    request[REQUEST_ID] = rid
    try:
        resp = await handler(request)
    except GatewayError as exc:
        return error_response(exc.status, exc.to_body(), rid, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        etype, code = _HTTP_ERRORS.get(exc.status, ("invalid_request_error", "http_error"))
        message = exc.reason if exc.status != 404 else f"Unknown path {request.method} {request.path}."
        return error_response(exc.status, {"error": {"message": message, "type": etype, "code": code,
                                                     "param": None}}, rid)
    if not resp.prepared:
        resp.headers.setdefault("x-request-id", rid)
    return resp
