"""The one Protocol a provider adapter implements: what differs between kinds of upstream server that
all speak the OpenAI API — how the gateway authenticates to them and where a request goes.

Chosen by the deployment's ``provider`` (gateway/providers/__init__.py); a stateless module-level
singleton. ``check`` runs at config validation; ``headers`` and ``url_for`` once per deployment when the
router is built, so that per attempt only the returned ``UrlFor`` runs (a few string operations).
A new kind of upstream (Anthropic, say) is one file implementing this, plus a line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.config import Deployment

UrlFor = Callable[[str, str], str]  # (endpoint path such as "/chat/completions", upstream model) -> URL


class Provider(Protocol):
    name: str  # the registry name (the deployment's `provider` value that selects it)

    def check(self, dep: Deployment) -> list[str]:
        """What is wrong with a deployment of this kind (config validation reports it at start)."""

    def headers(self, dep: Deployment, api_key: str | None) -> dict[str, str]:
        """The auth headers the gateway sends (never the client's own credentials)."""

    def url_for(self, dep: Deployment) -> UrlFor:
        """Where this deployment's requests go, per endpoint path and upstream model."""
