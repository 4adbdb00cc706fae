"""The texts of a request or a non-streamed answer, by endpoint name: kept for callers that have only the
name. The shapes live in the endpoint adapters (``gateway.endpoints``); a stage that has the Exchange
asks ``endpoint_for(ex.endpoint)`` directly."""

from __future__ import annotations

from typing import Any

from gateway.endpoints import endpoint_for
from gateway.endpoints.texts import TextRef

__all__ = ["TextRef", "request_texts", "response_texts"]


def request_texts(endpoint: str, body: dict[str, Any]) -> list[TextRef]:
    return endpoint_for(endpoint).request_texts(body)


def response_texts(endpoint: str, body: dict[str, Any]) -> list[TextRef]:
    """Texts of a non-streamed answer (chat, completions, Responses; embeddings carry none)."""
    return endpoint_for(endpoint).response_texts(body)
