"""Provider adapters: one per kind of upstream, all implementing ``Provider`` (gateway/providers/base.py).

A deployment's ``provider`` picks its adapter; a value without one (``openai``, ``vllm``, the mock's
``gatewatch-mock``...) is an OpenAI-compatible server, and the value stays the label events record.
Adding a kind: one module with its adapter, one entry here.
"""

from __future__ import annotations

from gateway.providers.azure_openai import AZURE_OPENAI
from gateway.providers.base import Provider, UrlFor
from gateway.providers.openai import OPENAI

__all__ = ["PROVIDERS", "Provider", "UrlFor", "provider_for"]

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OPENAI, AZURE_OPENAI)}


def provider_for(name: str) -> Provider:
    return PROVIDERS.get(name, OPENAI)
