"""POST /v1/embeddings: ``input`` is a string or a non-empty array; answers carry vectors and usage only
(no text to redact), and are never streamed, so no usage is injected."""

from __future__ import annotations

from typing import Any

from gateway.endpoints import texts
from gateway.endpoints.choices import ChoicesEndpoint
from gateway.endpoints.common import invalid, strings_as
from gateway.endpoints.texts import TextRef


class Embeddings(ChoicesEndpoint):
    name = "embeddings"
    path = "/embeddings"
    items = "input"
    items_limit = "max_inputs"
    injects_usage = False

    def validate(self, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
            raise invalid("'input' is required and must be a string or a non-empty array.", "input")

    def request_texts(self, body: dict[str, Any]) -> list[TextRef]:
        return texts.identity(body) + list(texts.strings(body, "input"))

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return strings_as("input", body.get("input"))


EMBEDDINGS = Embeddings()
