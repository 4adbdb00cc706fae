"""POST /v1/completions (legacy): ``prompt`` is a string or an array; answers carry ``choices[].text``."""

from __future__ import annotations

from typing import Any

from gateway.endpoints import texts
from gateway.endpoints.choices import ChoicesEndpoint
from gateway.endpoints.common import invalid, strings_as
from gateway.endpoints.texts import TextRef


class Completions(ChoicesEndpoint):
    name = "completions"
    path = "/completions"
    items = "prompt"
    items_limit = "max_messages"

    def validate(self, body: dict[str, Any]) -> None:
        if "prompt" not in body or not isinstance(body["prompt"], str | list):
            raise invalid("'prompt' is required and must be a string or an array.", "prompt")

    def request_texts(self, body: dict[str, Any]) -> list[TextRef]:
        return texts.identity(body) + list(texts.strings(body, "prompt"))

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return strings_as("prompt", body.get("prompt"))

    def flushed_choice(self, idx: Any, content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        return {"index": idx, "text": content, "finish_reason": None}  # no tool calls in this API


COMPLETIONS = Completions()
