"""Event schema v1: one event per finished exchange (completed, failed or denied).

Both sides import this module: the gateway builds events (``Event.model_construct`` on the hot path,
the fields are produced by our own code), the consumers validate what they read from Kafka
(``Event.model_validate_json``) and dead-letter what does not validate.

Field names are snake_case so they map 1:1 onto ClickHouse columns. Where an OpenTelemetry GenAI
semantic-convention attribute exists (semconv v1.37+), ``OTEL_GENAI_ATTRIBUTES`` maps our field to it;
``to_otel_attributes`` renders an event as those attributes.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

Outcome = Literal["completed", "failed", "denied"]
Capture = Literal["full", "hashes", "none"]
Endpoint = Literal["chat.completions", "completions", "embeddings", "responses"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Usage(_Model):
    input_tokens: int | None = None  # gen_ai.usage.input_tokens
    output_tokens: int | None = None  # gen_ai.usage.output_tokens
    total_tokens: int | None = None


class Message(_Model):
    """One request message (or prompt / embedding input / Responses input item), flattened to text.

    ``content`` is None when capture is ``hashes`` or ``none``; ``content_sha256`` is set for ``hashes``.
    Text here is always the *redacted* text unless the tenant's policy allows raw capture.
    """

    role: str
    content: str | None = None
    content_sha256: str | None = None
    name: str | None = None


class RequestCapture(_Model):
    messages: list[Message] = Field(default_factory=list)
    # retrieved documents passed in the gateway extension field (``gatewatch.context``), stripped upstream
    context: list[Message] = Field(default_factory=list)
    # sampling parameters (temperature, max_tokens, ...) as sent by the client; never message text
    params: dict[str, Any] = Field(default_factory=dict)


class ResponseCapture(_Model):
    text: str | None = None
    text_sha256: str | None = None
    finish_reasons: list[str] = Field(default_factory=list)  # gen_ai.response.finish_reasons


class PolicyDecision(_Model):
    decision: Literal["allow", "deny", "flag"] = "allow"
    rule_ids: list[str] = Field(default_factory=list)
    reason: str | None = None
    policy_version: str | None = None


class Event(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    request_id: str
    gateway_instance: str
    sequence: int = Field(ge=0, description="per-gateway-instance sequence number, gap-free")

    ts_start: datetime
    ts_first_token: datetime | None = None
    ts_end: datetime

    tenant: str
    key_id: str | None = None
    end_user: str | None = None  # OpenAI `user` / `safety_identifier` or x-gatewatch-end-user header
    metadata: dict[str, str] = Field(default_factory=dict)

    endpoint: Endpoint
    operation: str  # gen_ai.operation.name: chat | text_completion | embeddings | responses
    request_model: str | None = None  # gen_ai.request.model (the alias the client asked for)
    response_model: str | None = None  # gen_ai.response.model (what the upstream says it served)
    deployment: str | None = None  # upstream deployment name (our config)
    provider: str | None = None  # gen_ai.provider.name
    response_id: str | None = None  # gen_ai.response.id
    stream: bool = False
    attempts: int = 0

    status: int  # HTTP status returned to the client
    outcome: Outcome
    error_type: str | None = None  # error.type
    error_message: str | None = None

    latency_ms: float  # ts_end - ts_start
    ttft_ms: float | None = None  # first token (streams) or first byte (non-stream)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None

    capture: Capture = "full"
    request: RequestCapture = Field(default_factory=RequestCapture)
    response: ResponseCapture = Field(default_factory=ResponseCapture)

    policy: PolicyDecision = Field(default_factory=PolicyDecision)
    pii_counts: dict[str, int] = Field(default_factory=dict)  # entity type -> count, never values

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


# our field -> OpenTelemetry GenAI / general semantic-convention attribute (semconv v1.37)
OTEL_GENAI_ATTRIBUTES: dict[str, str] = {
    "operation": "gen_ai.operation.name",
    "request_model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "response_id": "gen_ai.response.id",
    "provider": "gen_ai.provider.name",
    "usage.input_tokens": "gen_ai.usage.input_tokens",
    "usage.output_tokens": "gen_ai.usage.output_tokens",
    "response.finish_reasons": "gen_ai.response.finish_reasons",
    "error_type": "error.type",
    "status": "http.response.status_code",
    "end_user": "enduser.id",
    "request_id": "gen_ai.request.id",  # not in semconv; kept under the same namespace for grouping
    "stream": "gen_ai.request.stream",  # not in semconv
}

OPERATION_BY_ENDPOINT: dict[str, str] = {
    "chat.completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "responses",
}


def to_otel_attributes(event: Event) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    out: dict[str, Any] = {}
    for field, attr in OTEL_GENAI_ATTRIBUTES.items():
        value: Any = data
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[attr] = value
    return out


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def json_schema() -> dict[str, Any]:
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://gatewatch.dev/schemas/events.v1.json"
    return schema


if __name__ == "__main__":  # regenerate the committed JSON Schema: python -m schemas.events
    from pathlib import Path

    out = Path(__file__).with_name("events.v1.json")
    out.write_bytes(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {out}")
