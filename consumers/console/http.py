"""What every ``/api`` handler of the console shares: the error type, JSON responses and the request's token."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from consumers.console.tokens import TokenRecord

TOKEN_KEY = web.RequestKey("console_token", TokenRecord)
NO_STORE = {"Cache-Control": "no-store"}  # token-protected answers stay out of shared caches


class ApiError(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status`` by the auth middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={**NO_STORE, **(headers or {})})


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)
