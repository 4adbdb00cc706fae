"""One error tree for the gateway. The HTTP layer renders every GatewayError as an OpenAI error object:
``{"error": {"message", "type", "code", "param"}}`` with ``status`` as the HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class PolicyDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "policy_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """The upstream answered with an error (after retries/fallbacks)."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"
    retriable = True


class UpstreamUnavailable(GatewayError):
    status = 503
    type = "upstream_error"
    code = "upstream_unavailable"
    retriable = True


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"
    retriable = True


class ServiceUnavailable(GatewayError):
    """The gateway itself refuses (shutting down, policy/redaction engine failure: fail closed)."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamStatusError(UpstreamError):
    """An upstream HTTP error passed through to the client with the upstream's status and body."""

    def __init__(self, status: int, body: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.upstream_body = body

    def to_body(self) -> dict[str, Any]:
        err = self.upstream_body.get("error") if isinstance(self.upstream_body, dict) else None
        if isinstance(err, dict) and "message" in err:
            return {"error": {"message": err.get("message"), "type": err.get("type", self.type),
                              "code": err.get("code"), "param": err.get("param")}}
        return super().to_body()


class PolicyUnavailable(ServiceUnavailable):
    """This tenant's policy file was rejected at reload and the tenant has no earlier good policy: its
    requests are refused (fail closed), never served by the defaults, until the file is fixed. The message
    names neither the file nor its errors (those are in the gateway's log)."""

    code = "policy_unavailable"
