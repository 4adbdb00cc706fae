"""The exchange vocabulary every layer speaks: Exchange, Reply, SSEEvent, Usage.

It sits on the ground floor of ``gateway/`` (it imports only the error tree) so that the chain, the
endpoint adapters, the provider adapters and the upstream client can all use it without importing one
another. Everything here is plain data; behaviour lives with the layer that owns it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError

DONE = b"[DONE]"  # the data of the sentinel event that ends chat/completions streams


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event. ``data`` is the raw payload; ``obj`` the parsed JSON (None for [DONE])."""

    data: bytes
    obj: dict[str, Any] | None = None
    event: str | None = None  # the `event:` field (Responses API), None for chat/completions

    def encode(self) -> bytes:
        if self.event is not None:
            return b"event: " + self.event.encode() + b"\ndata: " + self.data + b"\n\n"
        return b"data: " + self.data + b"\n\n"


@dataclass(slots=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # non-streamed JSON answer
    raw_body: bytes | None = None  # non-streamed answer passed through untouched (when body is None)
    chunks: AsyncIterator[SSEEvent] | None = None  # streamed answer
    # non-streamed answers: bookkeeping that runs once the answer is on the wire (events redaction,
    # usage accounting, the event itself), innermost stage first; see ``gateway.chain.base.run_after``
    after: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(slots=True, repr=False)
class Exchange:
    """Everything known about one request while it flows through the chain.

    ``endpoint`` is the name of an endpoint adapter (``gateway.endpoints``); code that needs to know how
    that API is shaped asks the adapter, never compares the name.

    Its repr names the request only: the headers hold the caller's API key and the body, captures and
    scratch hold prompt text, so none of them may reach a log line or a traceback through ``%r``."""

    request_id: str
    endpoint: str  # chat.completions | completions | embeddings | responses
    body: dict[str, Any]
    headers: Any  # the client's request headers (CIMultiDictProxy)
    ts_start: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    stream: bool = False
    # identity (auth stage)
    tenant: str = "anonymous"
    key_id: str | None = None
    allowed_models: frozenset[str] | None = None  # None = all
    end_user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # gateway extension field `gatewatch` (stripped before the upstream call)
    context_docs: list[str] = field(default_factory=list)
    # what the client asked to include
    client_wants_usage: bool = False
    # routing results (upstream stage)
    request_model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: int = 0
    t_first_token: float | None = None  # perf_counter
    # outcome
    status: int = 0
    error: GatewayError | None = None
    error_type: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    response_parts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    # governance (policy / redaction stages fill these)
    policy_decision: str = "allow"
    policy_rule_ids: list[str] = field(default_factory=list)
    policy_reason: str | None = None
    policy_version: str | None = None
    pii_counts: dict[str, int] = field(default_factory=dict)
    # text for the event; set by the redaction stage (None -> taken from the body by the emit stage)
    captured_messages: list[dict[str, Any]] | None = None
    captured_response: str | None = None
    scratch: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Exchange(request_id={self.request_id!r}, endpoint={self.endpoint!r}, tenant={self.tenant!r}, "
                f"key_id={self.key_id!r}, status={self.status!r})")

    def mark_first_token(self) -> None:
        if self.t_first_token is None:
            self.t_first_token = time.perf_counter()
