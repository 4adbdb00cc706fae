"""OpenAI and every OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp, the mock): ``Authorization:
Bearer`` and ``{base_url}{path}``. Any ``provider`` without an adapter of its own is this kind; its value
is then only the label events record (``gen_ai.provider.name``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Deployment
    from gateway.providers.base import UrlFor


class OpenAICompatible:
    name = "openai"

    def check(self, dep: Deployment) -> list[str]:
        if dep.api_version is not None:
            return [f"api_version applies to provider azure_openai only (this deployment's provider is "
                    f"{dep.provider!r})"]
        return []

    def headers(self, dep: Deployment, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def url_for(self, dep: Deployment) -> UrlFor:
        base = dep.base_url.rstrip("/")

        def url(path: str, model: str) -> str:
            return base + path

        return url


OPENAI = OpenAICompatible()
