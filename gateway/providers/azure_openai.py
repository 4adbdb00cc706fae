"""Azure OpenAI (dated API versions): ``api-key`` instead of Bearer, the deployment in the URL and the
API version in the query string::

    {base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}

``base_url`` is the resource endpoint (``https://{resource}.openai.azure.com``; a trailing ``/openai``
is accepted too) and the Azure deployment name is the deployment's upstream ``model`` (default: the
alias), as the openai SDK's ``AzureOpenAI`` client takes it. The Responses API is not deployment-scoped
on Azure (``{base_url}/openai/responses?api-version=...``, the deployment named by the body's ``model``),
again as that client does it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from gateway.config import Deployment
    from gateway.providers.base import UrlFor

_DEPLOYMENT_SCOPED = frozenset({"/chat/completions", "/completions", "/embeddings"})


class AzureOpenAI:
    name = "azure_openai"

    def check(self, dep: Deployment) -> list[str]:
        if not dep.api_version:
            return ["provider azure_openai needs api_version (the Azure OpenAI API version, "
                    "e.g. api_version: '2024-10-21')"]
        return []

    def headers(self, dep: Deployment, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    def url_for(self, dep: Deployment) -> UrlFor:
        root = dep.base_url.rstrip("/").removesuffix("/openai") + "/openai"
        query = "?api-version=" + quote(dep.api_version or "", safe="")
        fixed = quote(dep.model, safe="") if dep.model else None  # a catch-all's model comes per request

        def url(path: str, model: str) -> str:
            if path not in _DEPLOYMENT_SCOPED:
                return root + path + query
            name = fixed if fixed is not None else quote(model, safe="")
            return f"{root}/deployments/{name}{path}{query}"

        return url


AZURE_OPENAI = AzureOpenAI()
