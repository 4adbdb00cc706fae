"""Redaction stage (after policy) and the capture guard (just inside emit).

- Request: every text part (chat content strings and parts, tool-call arguments, completions prompts,
  embeddings inputs, Responses instructions / input items) gets the input-pattern redactions and the
  policy's input PII actions before the upstream call; optional reversible pseudonymization keeps the
  placeholder map on the Exchange only (never emitted or logged).
- Response: output PII actions, output patterns and placeholder restore, on bodies and incrementally on
  streams; nothing is held when the policy does not touch the answer.
- Events: ``captured_messages`` / ``captured_response`` / ``context_docs`` always hold the events-policy
  redacted text (raw only when the policy's events map allows it). The guard makes that true for
  requests refused before this stage too.
Fail closed: a redaction error refuses the request (503) or ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gateway.chain.base import Exchange, Next, Reply, SSEEvent
from gateway.chain.capture import messages_of
from gateway.chain.identity import drop_identity, has_identity, secure_identity
from gateway.chain.policy import deny, flag
from gateway.errors import GatewayError, PolicyDenied, ServiceUnavailable
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.metrics import PII_ENTITIES
from gateway.governance.output import StreamOutput, process_texts
from gateway.governance.patterns import PatternBlocked
from gateway.governance.store import PolicyStore
from gateway.governance.texts import request_texts, response_texts
from gateway.redaction import Action, PIIBlocked, PseudonymMap, RedactionFailed
from gateway.redaction.operators import Hasher
from gateway.upstream.client import error_event

log = logging.getLogger(__name__)


def _add(counts: dict[str, int], more: Mapping[str, int], where: str) -> None:
    for e, n in more.items():
        counts[e] = counts.get(e, 0) + n
        PII_ENTITIES.labels(e, where).inc(n)


def _merge_max(ex: Exchange, counts: Mapping[str, int]) -> None:
    for e, n in counts.items():
        ex.pii_counts[e] = max(ex.pii_counts.get(e, 0), n)


_LAST_TYPES = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


def _is_last(ev: SSEEvent) -> bool:
    if ev.data == b"[DONE]":
        return True
    obj = ev.obj
    if obj is None:
        return False
    return "error" in obj or (ev.event or obj.get("type")) in _LAST_TYPES


def _copy(body: dict[str, Any]) -> dict[str, Any]:
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
    """Set captured_messages / context_docs from ``body`` (not yet redacted for the events policy)."""
    refs = request_texts(ex.endpoint, body)
    n = len(refs)
    texts, counts = await events_texts(pol, [r.text for r in refs] + ex.context_docs, ex.tenant)
    for ref, t in zip(refs, texts[:n], strict=True):
        ref.set(t)
    ex.context_docs = texts[n:]
    ex.captured_messages = messages_of(ex.endpoint, body)
    return counts


class CaptureGuard:
    """Right inside emit: a request refused before the redaction stage (auth, parse, policy) still has
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
            await capture_request(ex, current.for_tenant(ex.tenant), _copy(ex.body))
        except Exception:  # noqa: BLE001 - nothing unredacted may reach the event: store no text
            ex.captured_messages, ex.context_docs = [], []


class RedactionStage:
    name = "redaction"

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        pol: CompiledPolicy | None = ex.scratch.get("policy")
        if pol is None:
            raise ServiceUnavailable("The gateway has no policy for this request; it was refused.",
                                     code="policy_unavailable")
        if pol.events_actions:  # until redacted below, events store no text
            ex.captured_messages, ex.captured_response = [], ""
        try:
            await self.redact_request(ex, pol)
        except PIIBlocked as exc:
            raise deny(ex, exc, [f"pii.input.block.{t}" for t in exc.entity_types]) from None
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("input redaction failed (request refused)")
            raise RedactionFailed(f"PII redaction failed ({type(exc).__name__}); the request was refused.") from exc
        reply = await call_next(ex)
        if reply.chunks is not None:
            reply.chunks = self._stream(ex, pol, reply.chunks)
        elif reply.body is not None and reply.status < 400:
            await self._body(ex, pol, reply)
        else:
            ex.captured_response = None if not pol.events_actions else ""
        return reply

    # ---- request ------------------------------------------------------------------------------
    async def redact_request(self, ex: Exchange, pol: CompiledPolicy) -> None:
        pattern_redact = any(r.action == "redact" for r in pol.input_patterns.rules)
        if not (pol.input_actions or pattern_redact):  # the request goes as it is
            if pol.events_actions:
                _merge_max(ex, await capture_request(ex, pol, _copy(ex.body)))
            return
        refs = request_texts(ex.endpoint, ex.body)
        texts = [r.text for r in refs]
        if pattern_redact:
            for i, t in enumerate(texts):
                texts[i], hit = pol.input_patterns.redact(t)
                for rid in hit:
                    if rid not in ex.policy_rule_ids:
                        ex.policy_rule_ids.append(rid)
        events_body: dict[str, Any] | None = None
        same = dict(pol.events_actions) == dict(pol.input_actions) and not pol.pseudonymizing
        if not same:  # events are redacted from the pattern-redacted, not PII-redacted, text
            for ref, t in zip(refs, texts, strict=True):
                ref.set(t)
            events_body = _copy(ex.body)
        counts: dict[str, int] = {}
        if pol.input_actions and pol.redactor is not None and (any(texts) or (same and ex.context_docs)):
            pm = PseudonymMap() if pol.pseudonymizing else None
            extra = ex.context_docs if same else []
            acts: Mapping[str, Action] = pol.input_actions
            results = await pol.redactor.redact_many(texts + extra, acts, pseudonyms=pm,  # type: ignore[union-attr]
                                                      scope=ex.tenant)
            texts = [r.text for r in results[:len(texts)]]
            if same:
                ex.context_docs = [r.text for r in results[len(texts):]]
            for r in results:
                _add(counts, r.counts, "input")
            if pm is not None and len(pm):
                ex.scratch["pseudonyms"] = pm  # in memory for this request only
        for ref, t in zip(refs, texts, strict=True):
            ref.set(t)
        _merge_max(ex, counts)
        if same:
            ex.captured_messages = messages_of(ex.endpoint, ex.body)
        elif pol.events_actions:
            _merge_max(ex, await capture_request(ex, pol, events_body or _copy(ex.body)))
        else:
            ex.captured_messages = messages_of(ex.endpoint, events_body or ex.body)

    # ---- response -----------------------------------------------------------------------------
    async def _capture_response(self, ex: Exchange, pol: CompiledPolicy, text: str, out_counts: dict[str, int]
                                ) -> None:
        if not pol.events_actions:
            ex.captured_response = text
            return
        texts, counts = await events_texts(pol, [text], ex.tenant)
        ex.captured_response = texts[0]
        for e in set(counts) | set(out_counts):
            ex.pii_counts[e] = ex.pii_counts.get(e, 0) + max(counts.get(e, 0), out_counts.get(e, 0))

    async def _body(self, ex: Exchange, pol: CompiledPolicy, reply: Reply) -> None:
        body = reply.body
        assert body is not None
        refs = response_texts(ex.endpoint, body)
        if not refs:
            ex.captured_response = None if not pol.events_actions else ""
            return
        counts: dict[str, int] = {}
        try:
            if pol.touches_output:
                hits: set[str] = set()
                texts = await process_texts(pol, ex.scratch.get("pseudonyms"), [r.text for r in refs], counts, hits,
                                            ex.tenant)
                for ref, t in zip(refs, texts, strict=True):
                    ref.set(t)
                reply.raw_body = None
                if hits:
                    flag(ex, sorted(hits))
                _add({}, counts, "output")
        except PatternBlocked as exc:
            r = exc.rule
            raise deny(ex, PolicyDenied(r.reason or f"The answer matched a pattern this tenant's policy blocks "
                                        f"(rule {r.id}); it was withheld.", code="pattern_blocked"), [r.id]) from None
        except PIIBlocked as exc:
            raise deny(ex, exc, [f"pii.output.block.{t}" for t in exc.entity_types]) from None
        # the event's copy is redacted once the answer is on the wire (until then it holds no text)
        reply.after.append(functools.partial(self._deferred_capture, ex, pol, "".join(r.text for r in refs), counts))

    async def _deferred_capture(self, ex: Exchange, pol: CompiledPolicy, text: str, counts: dict[str, int]) -> None:
        try:
            await self._capture_response(ex, pol, text, counts)
        except Exception:  # noqa: BLE001 - never store unredacted text; the client already has its answer
            log.warning("events redaction of an answer failed; the event stores no response text")
            ex.captured_response = "" if pol.events_actions else None

    async def _stream(self, ex: Exchange, pol: CompiledPolicy, chunks: AsyncIterator[SSEEvent]
                      ) -> AsyncIterator[SSEEvent]:
        out = StreamOutput(ex.endpoint, pol, ex.scratch.get("pseudonyms")) if pol.touches_output else None
        events = chunks if out is None else self._rewrite(ex, out, chunks)
        captured = False
        try:
            async for ev in events:
                if not captured and _is_last(ev):  # capture before the client can see the end
                    captured = True
                    await self._stream_capture(ex, pol, out)
                yield ev
        finally:
            if not captured:
                await self._stream_capture(ex, pol, out)

    async def _rewrite(self, ex: Exchange, out: StreamOutput, chunks: AsyncIterator[SSEEvent]
                       ) -> AsyncIterator[SSEEvent]:
        try:
            async for ev in chunks:
                for e in await out.process(ev):
                    yield e
            for e in await out.flush_all():  # upstream ended without [DONE]
                yield e
        except (PatternBlocked, PIIBlocked) as exc:
            ids = [exc.rule.id] if isinstance(exc, PatternBlocked) else [
                f"pii.output.block.{t}" for t in exc.entity_types]
            deny(ex, PolicyDenied("The rest of the answer was withheld by this tenant's policy."), ids)
            ex.error_type = "policy_denied"
            yield error_event(ex, f"The rest of the answer was withheld by this tenant's policy (rules: "
                                  f"{', '.join(ids)}).", "policy_denied", "permission_error")
        except RedactionFailed as exc:
            ex.error_type = "redaction_failed"
            yield error_event(ex, f"{exc.message}; the rest of the answer was withheld.", "redaction_failed",
                              "server_error")
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("output redaction failed (stream ended)")
            ex.error_type = "redaction_failed"
            yield error_event(ex, f"PII redaction failed ({type(exc).__name__}); the rest of the answer was "
                                  "withheld.", "redaction_failed", "server_error")
        finally:
            if out.hits():
                flag(ex, sorted(out.hits()))
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _stream_capture(self, ex: Exchange, pol: CompiledPolicy, out: StreamOutput | None) -> None:
        text = out.text() if out is not None else "".join(ex.response_parts)
        counts = out.counts() if out is not None else {}
        _add({}, counts, "output")
        try:
            await self._capture_response(ex, pol, text, counts)
        except asyncio.CancelledError:
            ex.captured_response = "" if pol.events_actions else None
            raise
        except Exception:  # noqa: BLE001 - never store unredacted text; the client already has its answer
            log.warning("events redaction of a streamed answer failed; the event stores no response text")
            ex.captured_response = "" if pol.events_actions else None
