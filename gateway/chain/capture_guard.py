"""The capture guard (just inside emit) and the events-policy capture both it and the redaction stage use.

``captured_messages`` / ``context_docs`` always hold the events-policy redacted text (raw only when the
policy's events map allows it). The redaction stage makes that true for requests it sees; the guard makes
it true for requests refused before that stage (auth, parse, policy, limits), or drops the text when it cannot.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

import orjson

from gateway.chain.base import Next
from gateway.chain.identity import drop_identity, has_identity, secure_identity
from gateway.endpoints import endpoint_for
from gateway.exchange import Exchange, Reply
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.store import PolicyStore
from gateway.redaction.operators import Hasher


def copy_body(body: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (orjson round trip: faster than copy.deepcopy on JSON-shaped data)."""
    return orjson.loads(orjson.dumps(body))  # type: ignore[no-any-return]


async def events_texts(pol: CompiledPolicy, texts: list[str], tenant: str) -> tuple[list[str], dict[str, int]]:
    """``texts`` as the events policy stores them."""
    if not pol.events_actions or pol.redactor is None or not any(texts):
        return texts, {}
    results = await pol.redactor.redact_many(texts, pol.events_actions, scope=tenant)
    counts: dict[str, int] = {}
    for r in results:
        for e, n in r.counts.items():
            counts[e] = counts.get(e, 0) + n
    return [r.text for r in results], counts


async def capture_request(ex: Exchange, pol: CompiledPolicy, body: dict[str, Any]) -> dict[str, int]:
    """Set captured_messages / context_docs from ``body`` (a copy, not yet redacted for the events policy)."""
    api = endpoint_for(ex.endpoint)
    refs = api.request_texts(body)
    n = len(refs)
    texts, counts = await events_texts(pol, [r.text for r in refs] + ex.context_docs, ex.tenant)
    for ref, t in zip(refs, texts[:n], strict=True):
        ref.set(t)
    ex.context_docs = texts[n:]
    ex.captured_messages = api.messages(body)
    return counts


class CaptureGuard:
    """Right inside emit: a request refused before the redaction stage (auth, parse, policy, limits) still has
    its event text redacted for the events policy, or dropped when that cannot be done."""

    name = "capture-guard"

    def __init__(self, policies: PolicyStore, hash_secret: str | None = None) -> None:
        self.policies = policies
        self.hasher = Hasher(hash_secret.encode() if hash_secret else os.urandom(32))

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        try:
            reply = await call_next(ex)
        except asyncio.CancelledError:
            if ex.captured_messages is None:
                ex.captured_messages, ex.context_docs = [], []
            if has_identity(ex):
                drop_identity(ex)
            raise
        except BaseException:
            if ex.captured_messages is None:
                await self.secure(ex)
            await self.identity(ex)
            raise
        if has_identity(ex):  # the end user and metadata values, as the events policy stores them
            if reply.chunks is None:
                reply.after.append(functools.partial(self.identity, ex))  # once the answer is written
            else:
                await self.identity(ex)
        return reply

    async def identity(self, ex: Exchange) -> None:
        try:
            pol: CompiledPolicy | None = ex.scratch.get("policy")
            current = self.policies.current
            if pol is None and current is not None and ex.tenant not in current.refused:
                pol = current.for_tenant(ex.tenant)
            await secure_identity(ex, pol, self.hasher)
        except Exception:  # noqa: BLE001 - fail closed: left out of the event, never stored raw
            drop_identity(ex)

    async def secure(self, ex: Exchange) -> None:
        if not ex.body and not ex.context_docs:
            ex.captured_messages = []
            return
        current = self.policies.current
        if current is None or ex.tenant in current.refused:  # no events policy to redact with: no text
            ex.captured_messages, ex.context_docs = [], []
            return
        try:
            await capture_request(ex, current.for_tenant(ex.tenant), copy_body(ex.body))
        except Exception:  # noqa: BLE001 - nothing unredacted may reach the event: store no text
            ex.captured_messages, ex.context_docs = [], []
