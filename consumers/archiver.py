"""The archiver: the pipeline with no scorers; every valid event becomes one row of ``gatewatch.events``.

``event_to_row`` flattens an Event into the columns of migration 0001; ``event_from_row`` is its inverse
(timestamps are kept to the millisecond, as DateTime64(3) stores them). ``EventsArchiver`` is the
pipeline's only stage; it has the Scorer shape so the run loop treats every pipeline alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.audit.integrity import content_hash
from consumers.contracts import Row, TableRows
from schemas.events import Event, Message

EVENTS_TABLE = "events"
ARCHIVER_PIPELINE = "archiver"
_MESSAGE_FIELDS = ("role", "content", "content_sha256", "name")


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _messages(messages: Sequence[Message]) -> list[tuple[Any, ...]]:
    return [(m.role, m.content, m.content_sha256, m.name) for m in messages]


def event_to_row(event: Event) -> Row:
    """One ``gatewatch.events`` row (without ``ingested_at``, which the table fills in), with its content hash."""
    usage, req, resp, policy = event.usage, event.request, event.response, event.policy
    return {
        "event_id": event.event_id, "schema_version": event.schema_version,
        "request_id": event.request_id, "gateway_instance": event.gateway_instance,
        "sequence": event.sequence, "ts_start": _utc(event.ts_start),
        "ts_first_token": _utc(event.ts_first_token), "ts_end": _utc(event.ts_end),
        "tenant": event.tenant, "key_id": event.key_id, "end_user": event.end_user,
        "metadata": dict(event.metadata), "endpoint": event.endpoint, "operation": event.operation,
        "request_model": event.request_model, "response_model": event.response_model,
        "deployment": event.deployment, "provider": event.provider, "response_id": event.response_id,
        "stream": event.stream, "attempts": event.attempts, "status": event.status,
        "outcome": event.outcome, "error_type": event.error_type, "error_message": event.error_message,
        "latency_ms": event.latency_ms, "ttft_ms": event.ttft_ms,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens, "cost_usd": event.cost_usd, "capture": event.capture,
        "request_messages": _messages(req.messages), "request_context": _messages(req.context),
        "request_params": orjson.dumps(req.params).decode(),
        "response_text": resp.text, "response_text_sha256": resp.text_sha256,
        "finish_reasons": list(resp.finish_reasons),
        "policy_decision": policy.decision, "policy_rule_ids": list(policy.rule_ids),
        "policy_reason": policy.reason, "policy_version": policy.policy_version,
        "pii_counts": dict(event.pii_counts),
        "content_hash": content_hash(event),  # tamper evidence (migration 0006)
    }


def _message_dicts(value: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(m) if isinstance(m, Mapping) else dict(zip(_MESSAGE_FIELDS, m, strict=True)) for m in value]


def event_from_row(row: Mapping[str, Any]) -> Event:
    """Rebuild the Event from a ``gatewatch.events`` row (as ``query(...).named_results()`` returns it)."""
    return Event.model_validate({
        **{k: row[k] for k in (
            "schema_version", "event_id", "request_id", "gateway_instance", "sequence", "tenant", "key_id",
            "end_user", "metadata", "endpoint", "operation", "request_model", "response_model", "deployment",
            "provider", "response_id", "stream", "attempts", "status", "outcome", "error_type",
            "error_message", "latency_ms", "ttft_ms", "cost_usd", "capture", "pii_counts")},
        "ts_start": _utc(row["ts_start"]), "ts_first_token": _utc(row["ts_first_token"]),
        "ts_end": _utc(row["ts_end"]),
        "usage": {k: row[k] for k in ("input_tokens", "output_tokens", "total_tokens")},
        "request": {
            "messages": _message_dicts(row["request_messages"]),
            "context": _message_dicts(row["request_context"]),
            "params": orjson.loads(row["request_params"] or "{}"),
        },
        "response": {"text": row["response_text"], "text_sha256": row["response_text_sha256"],
                     "finish_reasons": list(row["finish_reasons"])},
        "policy": {"decision": row["policy_decision"], "rule_ids": list(row["policy_rule_ids"]),
                   "reason": row["policy_reason"], "policy_version": row["policy_version"]},
    })


class EventsArchiver:
    """The archiver's only stage: events -> ``{"events": rows}``. Pure, no model, nothing to load."""

    name = ARCHIVER_PIPELINE

    async def start(self) -> None:
        return None

    async def score(self, events: Sequence[Event]) -> TableRows:
        return {EVENTS_TABLE: [event_to_row(e) for e in events]}

    async def stop(self) -> None:
        return None
