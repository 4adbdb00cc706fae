"""The one Protocol an endpoint adapter implements: everything the gateway knows about the shape of one
OpenAI-style API, so that no other module compares endpoint names.

An adapter is a stateless module-level singleton (``gateway.endpoints.ENDPOINTS``). A stage looks it up
once per request by ``Exchange.endpoint``; its methods take the Exchange they fill, never keep it.
A new API (a ``messages`` endpoint, say) is one file implementing this, plus a line in the registry.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from gateway.endpoints.texts import TextRef
from gateway.exchange import Exchange, SSEEvent


class TextSlots(Protocol):
    """The texts of one stream being rewritten (``gateway.governance.output.StreamOutput`` implements it).

    The adapter knows where a stream's texts are; the slots know what to do with them (output PII
    actions, output patterns, pseudonym restore). A slot is one text that arrives in deltas (a choice's
    content, one tool call's arguments, a Responses content part), under a key the adapter chooses; it may
    hold text back (a window wide enough to see a whole match) until it is flushed."""

    async def feed(self, key: Hashable, delta: str) -> str:
        """The part of the slot's text that may be sent now (possibly empty)."""

    async def flush(self, key: Hashable) -> str:
        """Close the slot: the text it held back ("" when it is not open)."""

    async def full(self, key: Hashable, fallback: str) -> str:
        """The slot's whole client-visible text, flushing it; a slot never streamed takes ``fallback`` now."""

    def pending(self) -> list[Hashable]:
        """The keys of the slots not flushed yet (a snapshot: flushing while iterating is fine)."""


class Endpoint(Protocol):
    name: str  # Exchange.endpoint, the metric label and the event's `endpoint` field
    path: str  # the route under /v1 for clients, and under the deployment's base for OpenAI-style upstreams
    items: str  # the body field whose length is capped ...
    items_limit: str  # ... by this BodyLimits attribute (checked before any other work)
    injects_usage: bool  # streams get `stream_options.include_usage` added (see ``prepare``)

    def validate(self, body: dict[str, Any]) -> None:
        """Raise InvalidRequest for what this API requires (after the checks every endpoint shares)."""

    def request_texts(self, body: dict[str, Any]) -> list[TextRef]:
        """Every text of a request, writable in place (policy patterns, PII redaction)."""

    def response_texts(self, body: dict[str, Any]) -> list[TextRef]:
        """Every text of a non-streamed answer, writable in place (output redaction)."""

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The request as the event records it: ``[{role, content, name?}]``."""

    def prepare(self, ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
        """The body to send upstream: asks a stream for its usage when the client did not (recording
        that in ``ex.client_wants_usage``), so the event has token counts either way."""

    def read_body(self, ex: Exchange, body: dict[str, Any]) -> None:
        """Fill usage, text, finish reasons, model and id from a non-streamed answer."""

    def read_event(self, ex: Exchange, obj: dict[str, Any], event: str | None) -> None:
        """Fill the same from one streamed event (``event`` is its SSE ``event:`` field)."""

    def is_usage_chunk(self, obj: dict[str, Any]) -> bool:
        """The usage-only chunk ``prepare`` asked for: hidden from a client that did not ask for it."""

    def is_error_chunk(self, obj: dict[str, Any]) -> bool:
        """An error the upstream sent inside a stream that goes on (chat/completions style)."""

    def is_terminal(self, ev: SSEEvent, obj: dict[str, Any]) -> bool:
        """An event after which the stream is complete, besides ``[DONE]`` (Responses API style)."""

    def error_event(self, message: str, code: str, etype: str) -> SSEEvent:
        """The event that ends a stream the gateway cannot finish, in this API's error shape."""

    async def rewrite_event(self, ev: SSEEvent, obj: dict[str, Any], slots: TextSlots) -> list[SSEEvent]:
        """A parsed stream event with its texts put through ``slots`` (in place, ``ev.data`` re-encoded):
        the events to send in its place, text held back until now (in events of this API's shape) first."""

    async def flush_events(self, slots: TextSlots, like: dict[str, Any]) -> list[SSEEvent]:
        """Events carrying the text every open slot still holds (before the end of the answer); ``like`` is
        the event they go before (its head: id, model), ``{}`` when there is none."""
