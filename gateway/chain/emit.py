"""Outermost stage: records one event per exchange (completed, failed or denied) and the request metrics.

It reads only what the inner stages left on the Exchange (the redacted capture when redaction ran).
Events are built as plain dicts in the shape of ``schemas.events.Event`` and serialised with orjson:
the consumers validate them; the request path never waits for delivery.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from gateway.chain.base import Next
from gateway.chain.capture import apply_capture, capture_text, params_of
from gateway.config import Price
from gateway.endpoints import endpoint_for
from gateway.errors import GatewayError
from gateway.exchange import Exchange, Reply, SSEEvent
from gateway.ids import new_id
from gateway.metrics import (
    CLIENT_DISCONNECTS,
    COST,
    EVENTS_SANITIZED,
    EVENTS_TRUNCATED,
    LATENCY,
    REQUESTS,
    TOKENS,
    TTFT,
    child,
)
from schemas.events import OPERATION_BY_ENDPOINT, SCHEMA_VERSION


class EventSink(Protocol):
    def send(self, key: str, payload: bytes) -> None: ...  # non-blocking, never raises


_second: list[object] = [None, ""]  # (whole second, its "YYYY-MM-DDTHH:MM:SS" text): events share seconds


def _iso(ts: float) -> str:
    sec = int(ts)
    if _second[0] != sec:
        _second[0], _second[1] = sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((ts - sec) * 1000):03d}Z"


def cost_of(price: Price | None, ex: Exchange) -> float | None:
    if price is None or ex.usage.input_tokens is None:
        return None
    return (ex.usage.input_tokens * price.input_per_1m + (ex.usage.output_tokens or 0) * price.output_per_1m) / 1e6


# Kafka's default message.max.bytes and the producer's max_request_size are 1 MiB; an event over it would
# be dropped (counted) — an exchange missing from the audit log because its text was long. Events are cut
# to fit this, with room for the key, headers and record overhead.
EVENT_MAX_BYTES = 960 << 10
_CUT = "…[cut by the gateway: {} more characters]"


def serialize(event: dict[str, Any], max_bytes: int = EVENT_MAX_BYTES) -> bytes:
    """The event as JSON, never lost to its content: a string orjson refuses (a lone surrogate: bytes that
    were not UTF-8) is stored with those code points escaped (``\\udce9``); an event over ``max_bytes`` has
    its longest texts cut (each marked with how much was cut). Both are counted."""
    try:
        payload = orjson.dumps(event)
    except TypeError:
        EVENTS_SANITIZED.inc()
        event = _escaped(event)
        payload = orjson.dumps(event)
    if len(payload) > max_bytes:
        EVENTS_TRUNCATED.inc()
        payload = _fit(event, len(payload), max_bytes)
    return payload


def _texts(event: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(holder, key) of every free text of an event: message and context contents, the response."""
    req, resp = event["request"], event["response"]
    out = [(m, "content") for m in (*req["messages"], *req["context"]) if isinstance(m.get("content"), str)]
    if isinstance(resp.get("text"), str):
        out.append((resp, "text"))
    return out


def _fit(event: dict[str, Any], size: int, max_bytes: int) -> bytes:
    """Cap every text at one length, halving it until the event fits (a handful of tries, huge events only)."""
    slots = _texts(event)
    original = [h[k] for h, k in slots]
    cap = max((len(t) for t in original), default=0)
    payload = b""
    while cap > 0:
        cap //= 2
        for (holder, key), text in zip(slots, original, strict=True):
            holder[key] = text if len(text) <= cap else text[:cap] + _CUT.format(len(text) - cap)
        payload = orjson.dumps(event)
        if len(payload) <= max_bytes:
            return payload
    # no text left to cut (an absurd metadata map): keep the exchange's facts, drop the free-form maps
    event["metadata"], event["request"]["params"] = {}, {}
    return orjson.dumps(event)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


class EmitStage:
    name = "emit"

    def __init__(self, sink: EventSink, instance_id: str, capture_for: Callable[[str], str],
                 price_for: Callable[[str | None], Price | None],
                 model_label: Callable[[str | None], str] = lambda m: "other") -> None:
        self.sink = sink
        self.instance_id = instance_id
        self.capture_for = capture_for
        self.price_for = price_for
        self.model_label = model_label  # a configured alias, else "other": clients cannot mint label values
        self._seq = itertools.count()

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        try:
            reply = await call_next(ex)
        except GatewayError as exc:
            ex.error = exc
            ex.status = exc.status
            ex.error_type = ex.error_type or exc.code
            self.finish(ex)
            raise
        except asyncio.CancelledError:
            self._disconnected(ex)
            self.finish(ex)
            raise
        except Exception as exc:
            ex.status = 500
            ex.error_type = f"internal_error:{type(exc).__name__}"
            self.finish(ex)
            raise
        ex.status = reply.status
        if reply.chunks is None:  # the event once the answer is written (and the inner stages' steps ran)
            reply.after.append(functools.partial(self.finish, ex))
        else:
            reply.chunks = self._watch(ex, reply.chunks)
        return reply

    async def _watch(self, ex: Exchange, chunks: AsyncIterator[SSEEvent]) -> AsyncIterator[SSEEvent]:
        complete = False
        try:
            async for ev in chunks:
                yield ev
            complete = True
        finally:
            if not complete and ex.error_type is None:
                self._disconnected(ex)
            self.finish(ex)

    def _disconnected(self, ex: Exchange) -> None:
        CLIENT_DISCONNECTS.inc()
        ex.error_type = "client_disconnected"
        if not ex.status:
            ex.status = 499  # nginx's "client closed request"

    def finish(self, ex: Exchange) -> None:
        now = time.time()
        end = time.perf_counter()
        latency = end - ex.t0
        ttft = (ex.t_first_token - ex.t0) if ex.t_first_token is not None else None
        price = self.price_for(ex.request_model)
        ex.cost_usd = cost_of(price, ex)
        child(REQUESTS, ex.endpoint, str(ex.status)).inc()
        child(LATENCY, ex.endpoint).observe(latency)
        if ttft is not None:
            child(TTFT, ex.endpoint).observe(ttft)
        # only configured aliases become label values (a client's arbitrary model names, which a
        # catch-all route accepts, must not: every value is a time series kept for the process's life)
        model = self.model_label(ex.request_model) if ex.deployment is not None else "unrouted"
        if ex.usage.input_tokens:
            child(TOKENS, model, "input").inc(ex.usage.input_tokens)
        if ex.usage.output_tokens:
            child(TOKENS, model, "output").inc(ex.usage.output_tokens)
        if ex.cost_usd:
            child(COST, model).inc(ex.cost_usd)
        self.sink.send(ex.tenant, serialize(self.build(ex, now, latency, ttft)))

    def build(self, ex: Exchange, now: float, latency: float, ttft: float | None) -> dict[str, Any]:
        mode = self.capture_for(ex.tenant)
        messages = ex.captured_messages
        if messages is None:
            messages = endpoint_for(ex.endpoint).messages(ex.body)
        text = ex.captured_response if ex.captured_response is not None else "".join(ex.response_parts)
        resp_text, resp_hash = capture_text(mode, text if (ex.response_parts or ex.captured_response) else None)
        failed = ex.status >= 400 or ex.error_type is not None
        denied = ex.policy_decision == "deny" or (ex.error is not None and ex.error.status in (401, 403))
        outcome = "denied" if denied else "failed" if failed else "completed"
        err = ex.error
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": new_id(),
            "request_id": ex.request_id,
            "gateway_instance": self.instance_id,
            "sequence": next(self._seq),
            "ts_start": _iso(ex.ts_start),
            "ts_first_token": _iso(ex.ts_start + ttft) if ttft is not None else None,
            "ts_end": _iso(now),
            "tenant": ex.tenant,
            "key_id": ex.key_id,
            "end_user": ex.end_user,
            "metadata": ex.metadata,
            "endpoint": ex.endpoint,
            "operation": OPERATION_BY_ENDPOINT[ex.endpoint],
            "request_model": ex.request_model,
            "response_model": ex.response_model,
            "deployment": ex.deployment,
            "provider": ex.provider,
            "response_id": ex.response_id,
            "stream": ex.stream,
            "attempts": ex.attempts,
            "status": ex.status,
            "outcome": outcome,
            "error_type": ex.error_type,
            "error_message": err.message if err is not None else None,
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
            "usage": {"input_tokens": ex.usage.input_tokens, "output_tokens": ex.usage.output_tokens,
                      "total_tokens": ex.usage.total_tokens},
            "cost_usd": ex.cost_usd,
            "capture": mode,
            "request": {
                "messages": apply_capture(mode, messages),
                "context": apply_capture(mode, [{"role": "document", "content": d} for d in ex.context_docs]),
                "params": params_of(ex.body),
            },
            "response": {"text": resp_text, "text_sha256": resp_hash, "finish_reasons": ex.finish_reasons},
            "policy": {"decision": ex.policy_decision, "rule_ids": ex.policy_rule_ids,
                       "reason": ex.policy_reason, "policy_version": ex.policy_version},
            "pii_counts": ex.pii_counts,
        }
