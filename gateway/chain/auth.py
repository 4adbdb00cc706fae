"""Authentication: ``Authorization: Bearer <key>`` (or Azure-style ``api-key``) -> key record -> tenant."""

from __future__ import annotations

from gateway.auth.keys import KeyStore
from gateway.chain.base import Next
from gateway.chain.parse import check_headers
from gateway.errors import Unauthorized
from gateway.exchange import Exchange, Reply


def bearer_token(headers: object) -> str | None:
    get = getattr(headers, "get")  # noqa: B009 - CIMultiDictProxy or dict
    auth = get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return str(token.strip())
        return None
    key = get("api-key")
    return str(key).strip() if key else None


class AuthStage:
    name = "auth"

    def __init__(self, store: KeyStore, allow_unauthenticated: bool = False) -> None:
        self.store = store
        self.allow_unauthenticated = allow_unauthenticated

    def authenticate(self, ex: Exchange) -> None:
        token = bearer_token(ex.headers)
        if token is not None and not token.isascii():
            ex.tenant = "unauthenticated"
            check_headers(ex.headers)  # names the undecodable header (a UTF-8 non-ASCII key is just wrong)
            raise Unauthorized("Incorrect API key provided.")
        if token is None:
            if self.allow_unauthenticated:
                ex.tenant = "anonymous"
                return
            ex.tenant = "unauthenticated"
            raise Unauthorized("You didn't provide an API key. Send it in the Authorization header as "
                               "'Authorization: Bearer <key>'.", code="missing_api_key")
        rec = self.store.lookup(token)
        if rec is None:
            ex.tenant = "unauthenticated"
            raise Unauthorized("Incorrect API key provided.")
        ex.tenant = rec.tenant
        ex.key_id = rec.id
        reason = rec.usable()
        if reason is not None:
            raise Unauthorized(reason, code="revoked_api_key" if rec.disabled else "expired_api_key")
        ex.allowed_models = rec.allowed_models

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        self.authenticate(ex)
        return await call_next(ex)
