"""The console's outermost middleware: every error it answers, on every route (the page, ``/static/``,
``/api``, ``/healthz``, ``/metrics``), has the API's shape ``{"error": {"code", "message"}}`` and a 4xx
status for anything a client sent; nothing a handler raised leaks into an answer.

- A path longer than ``MAX_PATH_CHARS`` (as sent, percent-encoded; the query string does not count) is a
  414 ``uri_too_long`` before any route or authentication runs: no console path is anywhere near that long,
  and such a path must never reach the filesystem (``File name too long`` used to surface as a 500).
- The router's own refusals (404, 405 with its ``Allow`` header, ...) keep their status; the message names
  neither the path nor anything else the client sent.
- Anything else a handler raises is logged with its traceback and answered as a bare 500
  ``internal_error`` (``CancelledError`` is never caught).

Request lines longer than aiohttp's parser limit (8190 bytes) never reach the application: aiohttp itself
answers them with a plain-text 400.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from consumers.console.http import error_response

log = logging.getLogger(__name__)
MAX_PATH_CHARS = 2048
_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large", 414: "uri_too_long", 415: "unsupported_media_type"}
_MESSAGES = {404: "no such path on this console", 414: f"the path is longer than {MAX_PATH_CHARS} characters"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_error(status: int, reason: str, method: str = "GET") -> web.Response:
    """The error shape for a plain HTTP refusal (router, parser, body limits)."""
    code = _CODES.get(status) or reason.lower().replace(" ", "_") or "error"
    message = _MESSAGES.get(status) or (f"method {method} is not allowed here" if status == 405 else reason)
    return error_response(status, code, message)


@web.middleware
async def console_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.rel_url.raw_path) > MAX_PATH_CHARS:
        return http_error(414, "URI Too Long", request.method)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like pass through
            raise
        response = http_error(exc.status, exc.reason, request.method)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("console: %s request failed", request.method)
        return error_response(500, "internal_error", "the console could not answer this request")
