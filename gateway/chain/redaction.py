"""Redaction stage (after policy): the caller's text on the way in, the answer on the way out.

- Request: every text part the endpoint adapter names (``Endpoint.request_texts``) gets the input-pattern
  redactions and the policy's input PII actions before the upstream call; optional reversible
  pseudonymization keeps the placeholder map on the Exchange only (never emitted or logged).
- Response: output PII actions, output patterns and placeholder restore, on bodies and incrementally on
  streams; nothing is held when the policy does not touch the answer.
- Events: ``captured_messages`` / ``captured_response`` / ``context_docs`` hold the events-policy redacted
  text (see gateway/chain/capture_guard.py, which covers requests refused before this stage).
Fail closed: a redaction error refuses the request (503) or ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.chain.base import Next
from gateway.chain.capture_guard import capture_request, copy_body, events_texts
from gateway.chain.policy import deny, flag
from gateway.endpoints import Endpoint, endpoint_for
from gateway.errors import GatewayError, PolicyDenied, ServiceUnavailable
from gateway.exchange import DONE, Exchange, Reply, SSEEvent
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.metrics import PII_ENTITIES
from gateway.governance.output import StreamOutput, process_texts
from gateway.governance.patterns import PatternBlocked
from gateway.redaction import Action, PIIBlocked, PseudonymMap, RedactionFailed

log = logging.getLogger(__name__)


def _add(counts: dict[str, int], more: Mapping[str, int], where: str) -> None:
    for e, n in more.items():
        counts[e] = counts.get(e, 0) + n
        PII_ENTITIES.labels(e, where).inc(n)


def _merge_max(ex: Exchange, counts: Mapping[str, int]) -> None:
    for e, n in counts.items():
        ex.pii_counts[e] = max(ex.pii_counts.get(e, 0), n)


def _is_last(api: Endpoint, ev: SSEEvent) -> bool:
    """The event that completes the answer (capture happens before the client can see it)."""
    if ev.data == DONE:
        return True
    obj = ev.obj
    if obj is None:
        return False
    return "error" in obj or api.is_terminal(ev, obj)


def _redact_patterns(ex: Exchange, pol: CompiledPolicy, texts: list[str]) -> None:
    """Input-pattern redactions, in place; the rules that hit are recorded on the exchange."""
    for i, t in enumerate(texts):
        texts[i], hit = pol.input_patterns.redact(t)
        for rid in hit:
            if rid not in ex.policy_rule_ids:
                ex.policy_rule_ids.append(rid)


async def _redact_pii(ex: Exchange, pol: CompiledPolicy, texts: list[str], same: bool) -> list[str]:
    """The input PII actions on ``texts`` (and on the context documents when the events policy is the
    same, so one pass serves both); a pseudonym map stays on the exchange, in memory only."""
    pm = PseudonymMap() if pol.pseudonymizing else None
    extra = ex.context_docs if same else []
    acts: Mapping[str, Action] = pol.input_actions
    results = await pol.redactor.redact_many(texts + extra, acts, pseudonyms=pm,  # type: ignore[union-attr]
                                              scope=ex.tenant)
    out = [r.text for r in results[:len(texts)]]
    if same:
        ex.context_docs = [r.text for r in results[len(texts):]]
    counts: dict[str, int] = {}
    for r in results:
        _add(counts, r.counts, "input")
    if pm is not None and len(pm):
        ex.scratch["pseudonyms"] = pm  # in memory for this request only
    _merge_max(ex, counts)
    return out


class RedactionStage:
    name = "redaction"

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        pol: CompiledPolicy | None = ex.scratch.get("policy")
        if pol is None:
            raise ServiceUnavailable("The gateway has no policy for this request; it was refused.",
                                     code="policy_unavailable")
        api = endpoint_for(ex.endpoint)
        if pol.events_actions:  # until redacted below, events store no text
            ex.captured_messages, ex.captured_response = [], ""
        try:
            await self.redact_request(ex, pol, api)
        except PIIBlocked as exc:
            raise deny(ex, exc, [f"pii.input.block.{t}" for t in exc.entity_types]) from None
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("input redaction failed (request refused)")
            raise RedactionFailed(f"PII redaction failed ({type(exc).__name__}); the request was refused.") from exc
        reply = await call_next(ex)
        if reply.chunks is not None:
            reply.chunks = self._stream(ex, pol, api, reply.chunks)
        elif reply.body is not None and reply.status < 400:
            await self._body(ex, pol, api, reply)
        else:
            ex.captured_response = None if not pol.events_actions else ""
        return reply

    # ---- request ------------------------------------------------------------------------------
    async def redact_request(self, ex: Exchange, pol: CompiledPolicy, api: Endpoint) -> None:
        pattern_redact = any(r.action == "redact" for r in pol.input_patterns.rules)
        if not (pol.input_actions or pattern_redact):  # the request goes as it is
            if pol.events_actions:
                _merge_max(ex, await capture_request(ex, pol, copy_body(ex.body)))
            return
        refs = api.request_texts(ex.body)
        texts = [r.text for r in refs]
        if pattern_redact:
            _redact_patterns(ex, pol, texts)
        events_body: dict[str, Any] | None = None
        same = dict(pol.events_actions) == dict(pol.input_actions) and not pol.pseudonymizing
        if not same:  # events are redacted from the pattern-redacted, not PII-redacted, text
            for ref, t in zip(refs, texts, strict=True):
                ref.set(t)
            events_body = copy_body(ex.body)
        if pol.input_actions and pol.redactor is not None and (any(texts) or (same and ex.context_docs)):
            texts = await _redact_pii(ex, pol, texts, same)
        for ref, t in zip(refs, texts, strict=True):
            ref.set(t)
        if same:
            ex.captured_messages = api.messages(ex.body)
        elif pol.events_actions:
            _merge_max(ex, await capture_request(ex, pol, events_body or copy_body(ex.body)))
        else:
            ex.captured_messages = api.messages(events_body or ex.body)

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

    async def _body(self, ex: Exchange, pol: CompiledPolicy, api: Endpoint, reply: Reply) -> None:
        body = reply.body
        assert body is not None
        refs = api.response_texts(body)
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

    async def _stream(self, ex: Exchange, pol: CompiledPolicy, api: Endpoint, chunks: AsyncIterator[SSEEvent]
                      ) -> AsyncIterator[SSEEvent]:
        out = StreamOutput(ex.endpoint, pol, ex.scratch.get("pseudonyms")) if pol.touches_output else None
        events = chunks if out is None else self._rewrite(ex, api, out, chunks)
        captured = False
        try:
            async for ev in events:
                if not captured and _is_last(api, ev):  # capture before the client can see the end
                    captured = True
                    await self._stream_capture(ex, pol, out)
                yield ev
        finally:
            if not captured:
                await self._stream_capture(ex, pol, out)

    async def _rewrite(self, ex: Exchange, api: Endpoint, out: StreamOutput, chunks: AsyncIterator[SSEEvent]
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
            yield api.error_event(f"The rest of the answer was withheld by this tenant's policy (rules: "
                                  f"{', '.join(ids)}).", "policy_denied", "permission_error")
        except RedactionFailed as exc:
            ex.error_type = "redaction_failed"
            yield api.error_event(f"{exc.message}; the rest of the answer was withheld.", "redaction_failed",
                                  "server_error")
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("output redaction failed (stream ended)")
            ex.error_type = "redaction_failed"
            yield api.error_event(f"PII redaction failed ({type(exc).__name__}); the rest of the answer was "
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
