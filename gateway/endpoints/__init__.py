"""Endpoint adapters: one per OpenAI-style API, all implementing ``Endpoint`` (gateway/endpoints/base.py).

``ENDPOINTS`` is the registry, in route order; ``endpoint_for`` is the one lookup a stage makes per
request. Adding an API: one module with its adapter, one entry here.
"""

from __future__ import annotations

from gateway.endpoints.base import Endpoint
from gateway.endpoints.chat import CHAT
from gateway.endpoints.completions import COMPLETIONS
from gateway.endpoints.embeddings import EMBEDDINGS
from gateway.endpoints.responses import RESPONSES
from gateway.endpoints.texts import TextRef

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "ENDPOINTS", "RESPONSES", "Endpoint", "TextRef", "endpoint_for"]

ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES)}


def endpoint_for(name: str) -> Endpoint:
    """The adapter for ``Exchange.endpoint`` (a KeyError is a programming error: routes come from here)."""
    return ENDPOINTS[name]
