"""create_app: the only wiring of the gateway process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from gateway.auth.keys import KeyStore
from gateway.chain.auth import AuthStage
from gateway.chain.base import Stage, build_chain
from gateway.chain.capture_guard import CaptureGuard
from gateway.chain.emit import EmitStage, EventSink
from gateway.chain.limits import LimitsStage
from gateway.chain.parse import BodyLimits, ParseStage
from gateway.chain.policy import PolicyStage
from gateway.chain.redaction import RedactionStage
from gateway.chain.upstream import UpstreamCall
from gateway.governance.limiter import InMemoryLimiter, LimiterStore
from gateway.governance.store import PolicyStore
from gateway.governance.usage import UsageTracker
from gateway.http.middlewares import errors_middleware
from gateway.http.routes import Api
from gateway.upstream.router import Router

if TYPE_CHECKING:
    from gateway.config import GatewaySettings

log = logging.getLogger(__name__)

ROUTER = web.AppKey("router", Router)
KEYS = web.AppKey("keys", KeyStore)
READINESS = web.AppKey("readiness", dict)
POLICIES = web.AppKey("policies", PolicyStore)
USAGE = web.AppKey("usage", UsageTracker)


class Emitter(EventSink, Protocol):
    async def start(self) -> None: ...
    async def stop(self, timeout: float = ...) -> None: ...
    def status(self) -> dict[str, Any]: ...


def instance_id(configured: str | None) -> str:
    return configured or f"{socket.gethostname()}-{os.getpid()}"


def create_app(settings: GatewaySettings, emitter: Emitter, *, keystore: KeyStore | None = None,
               forward_headers: tuple[str, ...] = (), extra_stages: tuple[Stage, ...] = (),
               limiter: LimiterStore | None = None) -> web.Application:
    """Chain: emit > capture-guard > auth > parse > policy > limits > redaction > [extra_stages] > upstream.
    ``limiter``: the rate-limit buckets (None: in memory, per process)."""
    gw = settings.gateway
    gov = settings.governance
    keys = keystore or KeyStore(settings.keys_file)
    router = Router(settings.models, settings.routing, forward_headers=forward_headers)
    auth = AuthStage(keys, allow_unauthenticated=gw.allow_unauthenticated)
    hash_secret = gov.hash_secret.get_secret_value() if gov.hash_secret else None
    policies = PolicyStore(settings.policy_dir, poll_s=gov.reload_poll_s, pii_threads=gov.pii_threads,
                           hash_secret=hash_secret)
    usage = UsageTracker(settings.usage_file, gov.usage_flush_s)

    def capture_for(tenant: str) -> str:
        current = policies.current
        mode = current.capture(tenant) if current is not None else None  # "none" for a refused tenant
        return mode or settings.tenant(tenant).capture

    limits = BodyLimits(gw.max_json_depth, gw.max_messages, gw.max_inputs)
    emit = EmitStage(emitter, instance_id(gw.instance_id), capture_for, router.price, router.model_label)
    policy = PolicyStage(policies)
    quotas = LimitsStage(keys, limiter or InMemoryLimiter(), usage, router.price)  # rate limits and budgets
    chain = build_chain([emit, CaptureGuard(policies, hash_secret), auth, ParseStage(limits), policy, quotas,
                         RedactionStage(), *extra_stages], UpstreamCall(router))
    readiness: dict[str, Any] = {"started": False, "shutting_down": False, "emitter": emitter.status}
    readiness["policy"] = policies.status  # rejected policy files: a /readyz detail, not unreadiness
    api = Api(chain, auth, router, gw.max_body_bytes, readiness)

    app = web.Application(middlewares=[errors_middleware], client_max_size=gw.max_body_bytes,
                          handler_args={"max_field_size": 16384})
    app[ROUTER] = router
    app[KEYS] = keys
    app[READINESS] = readiness
    app[POLICIES] = policies
    app[USAGE] = usage
    app.add_routes(api.routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await policies.start()  # builds the PII engines once, before the first request
        await usage.start()
        await emitter.start()
        await router.start()
        reloader = asyncio.create_task(_reload_keys(keys), name="keys-reloader")
        readiness["started"] = True
        log.info("gateway ready (%d model aliases, %d keys)", len(router.routes), len(keys))
        yield
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
        await api.drain(timeout=10.0)  # events of answers whose client hung up, before the emitter stops
        await router.stop()
        await emitter.stop(timeout=10.0)
        await usage.stop()
        await policies.stop()
        log.info("gateway stopped")

    async def on_shutdown(app: web.Application) -> None:
        readiness["shutting_down"] = True

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return app


async def _reload_keys(keys: KeyStore, interval: float = 1.0) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if keys.maybe_reload():
                log.info("reloaded %d API keys from %s", len(keys), keys.path)
        except (OSError, ValueError) as exc:  # keep the old keys; report and retry
            log.error("could not reload keys from %s: %s", keys.path, exc)
